//! The `zone-vmm` command line.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{DiskConfig, RawConfig, VsockConfig, DEFAULT_CMDLINE, DEFAULT_GUEST_CID};

/// Runs one zone: a KVM micro-VM with its own Linux kernel.
///
/// The VMM boots KERNEL (an ELF vmlinux or a bzImage) with the initrd and command line, gives
/// the guest a serial console, virtio-mmio disks, a vsock device and an entropy source, and
/// exits when the guest powers off or reboots (status 0). Errors exit with status 1, a stop by
/// SIGTERM/SIGINT with 143.
///
/// Examples:
///   zone-vmm --kernel bzImage --initrd initrd.cpio.gz --memory 512M --cpus 2
///   zone-vmm --kernel vmlinux --disk data.img --disk base.img,ro --vsock /run/zones/z1/vsock.sock
///   zone-vmm --config zone.toml --cpus 4        (flags override the file)
#[derive(Debug, Parser)]
#[command(name = "zone-vmm", version, verbatim_doc_comment)]
pub struct Cli {
    /// TOML file with the same settings as the flags (kernel, initrd, cmdline, memory, cpus,
    /// [[disk]] path/read_only, [vsock] guest_cid/socket, serial_log).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Guest kernel: an uncompressed ELF vmlinux or a bzImage with a 64-bit entry point.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk (cpio archive, optionally compressed).
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line; virtio-mmio device declarations are appended to it.
    #[arg(long, value_name = "STRING", long_help = format!("Kernel command line; virtio-mmio device declarations are appended to it [default: {DEFAULT_CMDLINE}]"))]
    pub cmdline: Option<String>,
    /// Guest memory: 256M, 1G, or a number of MiB [default: 256M].
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Number of vCPUs [default: 1].
    #[arg(long, value_name = "N")]
    pub cpus: Option<u64>,
    /// A raw disk image as a virtio-blk device; append ",ro" for read-only. Repeatable; the
    /// first disk is /dev/vda in the guest.
    #[arg(long, value_name = "PATH[,ro]")]
    pub disk: Vec<DiskConfig>,
    /// Host-side Unix socket of the zone's vsock device. Host processes connect to it and send
    /// "CONNECT <port>\n"; guest connections to host port N arrive at "<PATH>_N".
    #[arg(long, value_name = "PATH")]
    pub vsock: Option<PathBuf>,
    /// The zone's vsock CID.
    #[arg(long, value_name = "CID", default_value_t = DEFAULT_GUEST_CID, requires = "vsock")]
    pub vsock_cid: u64,
    /// Write the serial console to this file (capped at 16 MiB) instead of stdout.
    #[arg(long, value_name = "PATH", conflicts_with = "no_console")]
    pub serial_log: Option<PathBuf>,
    /// Discard the serial console.
    #[arg(long)]
    pub no_console: bool,
    /// Run even though this host's /dev/kvm is PVM nested virtualization (only PVM-patched or
    /// freestanding guests boot there).
    #[arg(long)]
    pub allow_pvm: bool,
}

impl Cli {
    /// The settings given as flags.
    pub fn flags(&self) -> RawConfig {
        RawConfig {
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline.clone(),
            memory: self.memory.clone(),
            cpus: self.cpus,
            disks: self.disk.clone(),
            vsock: self.vsock.clone().map(|socket| VsockConfig {
                guest_cid: self.vsock_cid,
                socket,
            }),
            serial_log: self.serial_log.clone(),
            console_off: self.no_console.then_some(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cli_parses_repeated_disks_and_vsock() {
        let cli = Cli::try_parse_from([
            "zone-vmm",
            "--kernel",
            "k",
            "--disk",
            "a.img",
            "--disk",
            "b.img,ro",
            "--vsock",
            "/tmp/v.sock",
            "--cpus",
            "2",
        ])
        .expect("parse");
        let raw = cli.flags();
        assert_eq!(raw.disks.len(), 2);
        assert!(raw.disks[1].read_only);
        assert_eq!(raw.vsock.map(|v| v.guest_cid), Some(DEFAULT_GUEST_CID));
        assert_eq!(raw.cpus, Some(2));
    }

    #[test]
    fn test_cli_rejects_bad_disk_and_cid_without_vsock() {
        assert!(Cli::try_parse_from(["zone-vmm", "--disk", "a,bogus"]).is_err());
        assert!(Cli::try_parse_from(["zone-vmm", "--vsock-cid", "5"]).is_err());
        assert!(Cli::try_parse_from(["zone-vmm", "--no-console", "--serial-log", "x"]).is_err());
    }
}
