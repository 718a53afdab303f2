//! `containerd-shim-zone-v1`: the containerd shim v2 of runtime `io.containerd.zone.v1`.
//! A pod is one zone; see `daemon` for the process model and `service` for the task API.

mod args;
mod bootstrap;
mod daemon;
mod events;
mod logging;
mod oom;
mod process;
mod rootfs;
mod service;
mod settings;
mod spec;
mod stdio;
mod vsock;
mod zone;

use std::io::Write;

use args::Action;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (flags, action) = match args::parse(&argv) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("containerd-shim-zone-v1: {e}");
            std::process::exit(2);
        }
    };
    let result = match action {
        Action::Version => {
            println!("containerd-shim-zone-v1 {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        // containerd reads stdout (and stderr) as the answer: only the address.
        Action::Start => daemon::start(&flags).map(|reply| {
            let _ = std::io::stdout().write_all(&reply);
        }),
        Action::Delete => daemon::delete(&flags).map(|bytes| {
            let _ = std::io::stdout().write_all(&bytes);
        }),
        Action::Serve => daemon::serve(&flags),
    };
    if let Err(e) = result {
        eprintln!("containerd-shim-zone-v1: {e:#}");
        std::process::exit(1);
    }
}
