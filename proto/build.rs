//! Compiles the `.proto` sources with protox (pure Rust, no system `protoc`) and generates
//! the Rust types with prost-build.

use std::path::Path;

const PROTOS: &[&str] = &["zone/agent/v1/agent.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let descriptors = protox::compile(PROTOS, [root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
