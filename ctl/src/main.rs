//! `zonectl`: see `zonectl --help`.

use clap::Parser;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use zonectl::cli::{Cli, Command};
use zonectl::run::EXIT_ZONE_FAILED;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(LevelFilter::WARN.into())
                .with_env_var("ZONECTL_LOG")
                .from_env_lossy(),
        )
        .init();
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let code = if e.use_stderr() { EXIT_ZONE_FAILED } else { 0 };
        let _ = e.print();
        std::process::exit(code)
    });
    let result: anyhow::Result<i32> = match cli.command {
        Command::Run(args) => zonectl::run::run(args),
        Command::Ps(args) => zonectl::ps::run(args).map(|()| 0),
        Command::Logs(args) => zonectl::logs::run(args).map(|()| 0),
        Command::Exec(args) => zonectl::exec::run(args),
        Command::Kill(args) => zonectl::kill::run(args).map(|()| 0),
        Command::Stop(args) => zonectl::stop::run(args).map(|()| 0),
        Command::Rm(args) => zonectl::rm::run(args).map(|()| 0),
        Command::Inspect(args) => zonectl::inspect::run(args).map(|()| 0),
        Command::Stats(args) => zonectl::stats::run(args).map(|()| 0),
        Command::Image(args) => zonectl::image::run(args).map(|()| 0),
        Command::Attest(args) => zonectl::attest::run(args).map(|()| 0),
        Command::Verify(args) => zonectl::verify::run(args),
        Command::Reference(args) => zonectl::reference::run(args).map(|()| 0),
        Command::Identity(args) => zonectl::identity::run(args).map(|()| 0),
        Command::Supervise(args) => zonectl::supervise::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("zonectl: error: {e:#}");
            std::process::exit(EXIT_ZONE_FAILED)
        }
    }
}
