//! The `zone-vmm` command line.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{
    DiskConfig, NetConfig, RawConfig, TpmConfig, VsockConfig, DEFAULT_CMDLINE, DEFAULT_GUEST_CID,
};

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
///   zone-vmm --kernel bzImage --net tap=tap0,mac=02:00:00:00:00:01,mtu=1500
///   zone-vmm --kernel bzImage --net fd=3        (a tap descriptor inherited from the parent)
///   zone-vmm --config zone.toml --cpus 4        (flags override the file)
///   zone-vmm --kernel bzImage --tpm /run/zones/z1/vtpm --tpm-event-log /run/zones/z1/eventlog \
///            --zone-claim zone-id=z1 --zone-claim image-manifest-digest=sha256:...
#[derive(Debug, Parser)]
#[command(name = "zone-vmm", version, verbatim_doc_comment)]
pub struct Cli {
    /// TOML file with the same settings as the flags (kernel, initrd, cmdline, memory, cpus,
    /// [[disk]] path/read_only, [vsock] guest_cid/socket, [net] tap/fd/mac/mtu, serial_log,
    /// [tpm] state_dir/event_log/swtpm/claims).
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
    /// A virtio-net device backed by a tap (at most one). SPEC is tap=NAME or fd=N, then
    /// optionally ,mac=aa:bb:cc:dd:ee:ff (default: random, locally administered) and ,mtu=N
    /// (68-65535, default 1500). tap=NAME opens /dev/net/tun and attaches to or creates tap
    /// NAME in the VMM's network namespace; fd=N uses inherited descriptor N, a tap opened
    /// with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (the VMM makes it non-blocking and close-on-exec).
    #[arg(long, value_name = "SPEC")]
    pub net: Option<NetConfig>,
    /// Write the serial console to this file (capped at 16 MiB) instead of stdout.
    #[arg(long, value_name = "PATH", conflicts_with = "no_console")]
    pub serial_log: Option<PathBuf>,
    /// Discard the serial console.
    #[arg(long)]
    pub no_console: bool,
    /// Give the zone a vTPM (CRB, measured boot): the VMM starts swtpm with its state in DIR
    /// (created if missing, and then removed when the zone ends) and, before the first vCPU
    /// runs, extends PCRs 0-9 and 15 with the kernel, initrd, command line, zone config and
    /// claims. Guests see /dev/tpm0 and the event log.
    #[arg(long, value_name = "DIR")]
    pub tpm: Option<PathBuf>,
    /// Also write the measured-boot event log (TCG crypto-agile, SHA-256) to FILE.
    #[arg(long, value_name = "FILE", requires = "tpm")]
    pub tpm_event_log: Option<PathBuf>,
    /// Also write the vTPM's endorsement key (TPM2B_PUBLIC, the TCG default ECC P-256 EK
    /// template) to FILE, read from the TPM before the first vCPU runs: the zone CA issues the
    /// EK certificate for it.
    #[arg(long, value_name = "FILE", requires = "tpm")]
    pub tpm_ek_public: Option<PathBuf>,
    /// A claim measured into PCR 15: zone-id=ID, image-manifest-digest=sha256:..., or
    /// oci-config-digest=sha256:... Repeatable; absent claims are measured as empty.
    #[arg(long, value_name = "KEY=VALUE", requires = "tpm")]
    pub zone_claim: Vec<String>,
    /// The swtpm binary [default: swtpm from PATH].
    #[arg(long, value_name = "PATH", requires = "tpm")]
    pub swtpm: Option<PathBuf>,
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
            net: self.net.clone(),
            serial_log: self.serial_log.clone(),
            console_off: self.no_console.then_some(true),
            tpm: self.tpm.clone().map(|state_dir| TpmConfig {
                state_dir,
                event_log: self.tpm_event_log.clone(),
                ek_public: self.tpm_ek_public.clone(),
                swtpm: self.swtpm.clone(),
                claims: self.zone_claim.clone(),
            }),
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
        assert!(Cli::try_parse_from(["zone-vmm", "--zone-claim", "zone-id=z"]).is_err());
        assert!(Cli::try_parse_from(["zone-vmm", "--tpm-event-log", "f"]).is_err());
        assert!(Cli::try_parse_from(["zone-vmm", "--tpm-ek-public", "f"]).is_err());
    }

    #[test]
    fn test_cli_parses_tpm_options() {
        let cli = Cli::try_parse_from([
            "zone-vmm",
            "--tpm",
            "/run/z/vtpm",
            "--tpm-event-log",
            "/run/z/log",
            "--tpm-ek-public",
            "/run/z/ek.pub",
            "--zone-claim",
            "zone-id=z1",
            "--zone-claim",
            "oci-config-digest=sha256:00",
        ])
        .expect("parse");
        let tpm = cli.flags().tpm.expect("tpm");
        assert_eq!(tpm.state_dir, PathBuf::from("/run/z/vtpm"));
        assert_eq!(tpm.event_log, Some(PathBuf::from("/run/z/log")));
        assert_eq!(tpm.ek_public, Some(PathBuf::from("/run/z/ek.pub")));
        assert_eq!(tpm.claims.len(), 2);
    }

    #[test]
    fn test_cli_net_spec_parses() {
        let cli = Cli::try_parse_from(["zone-vmm", "--net", "tap=tap0,mac=02:00:00:00:00:01"])
            .expect("parse");

        let net = cli.flags().net.expect("net");

        assert_eq!(net.tap.as_deref(), Some("tap0"));
        assert_eq!(net.mac.as_deref(), Some("02:00:00:00:00:01"));
    }

    #[test]
    fn test_cli_second_net_fails_clearly() {
        let err = Cli::try_parse_from(["zone-vmm", "--net", "tap=a", "--net", "fd=3"])
            .expect_err("two --net");

        assert!(err.to_string().contains("--net"), "{err}");
        assert!(
            err.to_string().contains("cannot be used multiple times"),
            "{err}"
        );
    }

    #[test]
    fn test_cli_bad_net_spec_names_setting() {
        let err =
            Cli::try_parse_from(["zone-vmm", "--net", "tap=a,colour=red"]).expect_err("bad spec");

        assert!(
            err.to_string().contains("unknown setting \"colour\""),
            "{err}"
        );
    }
}
