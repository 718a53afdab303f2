//! Compiles the `.proto` sources with protox (pure Rust, no system `protoc`) and generates
//! the Rust types and the gRPC client and server code with tonic-build (on prost-build).

use std::path::Path;

const PROTOS: &[&str] = &["zone/agent/v1/agent.proto", "spiffe/workload.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let descriptors = protox::compile(PROTOS, [root])?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
