use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use zone_vmm::cli::Cli;
use zone_vmm::config::{RawConfig, ZoneConfig};
use zone_vmm::hypervisor::host_is_pvm;
use zone_vmm::zone::{install_signal_handlers, Zone, ZoneExit};

fn main() -> ExitCode {
    let started = Instant::now();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZONE_VMM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse(), started) {
        Ok(ZoneExit::PowerOff) | Ok(ZoneExit::Reboot) => ExitCode::SUCCESS,
        Ok(ZoneExit::Stopped) => {
            eprintln!("zone-vmm: stopped by a signal");
            ExitCode::from(143)
        }
        Ok(ZoneExit::Failed(why)) => {
            eprintln!("zone-vmm: the zone failed: {why}");
            if host_is_pvm() {
                eprintln!("zone-vmm: note: this host's /dev/kvm is PVM; see --allow-pvm");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("zone-vmm: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, started: Instant) -> anyhow::Result<ZoneExit> {
    let stop = install_signal_handlers()?;
    let file = match &cli.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let config = ZoneConfig::try_from(file.overlay(cli.flags()))?;
    if host_is_pvm() && !cli.allow_pvm {
        anyhow::bail!(
            "this host's /dev/kvm is PVM nested virtualization (the kvm_pvm module is loaded): \
             it cannot boot a stock Linux guest kernel.\n\
             Run zones inside the KVM testbed instead: hack/testbed run -- zone-vmm ...\n\
             (--allow-pvm runs anyway, for PVM-patched or freestanding guest kernels)"
        );
    }
    let zone = Zone::build(&config, started).context("cannot build the zone")?;
    Ok(zone.run(&stop)?)
}
