//! Command-line interface: `zonectl <verb> ...` (clap derive).

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

use crate::size::Size;
use crate::zone_dir::DEFAULT_STATE_ROOT;

/// Smallest memory a zone gets: below this a Linux guest does not boot.
const MIN_MEMORY: Size = Size::from_mib(16);

#[derive(Debug, Parser)]
#[command(
    name = "zonectl",
    version,
    about = "Run commands and containers in Zones: KVM micro-VMs, one per container"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference between verbs' arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    Run(RunArgs),
    Ps(crate::ps::PsArgs),
    Logs(crate::logs::LogsArgs),
    Exec(crate::exec::ExecArgs),
    Kill(crate::kill::KillArgs),
    Stop(crate::stop::StopArgs),
    Rm(crate::rm::RmArgs),
    Inspect(crate::inspect::InspectArgs),
    Stats(crate::stats::StatsArgs),
    Image(crate::image::ImageArgs),
    Attest(crate::attest::AttestArgs),
    Verify(crate::verify::VerifyArgs),
    Reference(crate::reference::ReferenceArgs),
    Identity(crate::identity::IdentityArgs),
    /// Keeps a detached zone going (started by `zonectl run -d`).
    #[command(hide = true)]
    Supervise(crate::supervise::SuperviseArgs),
}

/// Selects one zone by name, id or unique id prefix.
#[derive(Debug, Args)]
pub struct ZoneRef {
    /// The zone's name, id or a unique prefix of its id.
    #[arg(value_name = "ZONE")]
    pub zone: String,

    /// Directory holding zones' state directories.
    #[arg(long, value_name = "DIR", env = "ZONES_STATE_ROOT", default_value = DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,
}

/// Run a container in a fresh zone, then stop the zone.
///
/// IMAGE comes from the local store (`zonectl image import`); its root file system becomes a
/// read-only disk of the zone with a RAM overlay on top, so writes never reach the image. CMD
/// replaces the image's Cmd. With --rootfs the command runs in that root file system image
/// instead, with --bare in the zone's own busybox userland.
/// zonectl exits with the command's exit status (128+N if it was killed by signal N, 127 if it
/// was not found, 126 if it could not be run, 125 if the zone failed).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  zonectl run busybox echo hello\n  \
                        zonectl run -e GREETING=hi --cpus 2 busybox sh -c 'echo $GREETING; nproc'\n  \
                        zonectl run --bare --memory 512M -- uname -a\n  \
                        zonectl run -d --name job busybox sh -c 'echo done'; zonectl logs job\n  \
                        zonectl run -d --network bridge -p 8080:80 busybox httpd -f -p 80\n  \
                        zonectl run --rootfs rootfs.ext4 -u nobody -w /tmp -- sh -c 'id; pwd'")]
pub struct RunArgs {
    /// Start the zone in the background and print its id; a supervisor process keeps it
    /// going and saves the command's output for `zonectl logs`.
    #[arg(short = 'd', long, conflicts_with_all = ["interactive", "keep_console"])]
    pub detach: bool,

    /// Name the zone (unique among zones); other verbs accept it in place of the id.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,

    /// Remove the zone's state when it ends (always so without -d).
    #[arg(long = "rm")]
    pub auto_remove: bool,

    /// Run the command inside this root file system image (ext4 unless ":erofs" follows);
    /// attached read-only as the zone's first disk, /dev/vda.
    #[arg(long, value_name = "PATH[:FSTYPE]", value_parser = RootfsSpec::from_str)]
    pub rootfs: Option<RootfsSpec>,

    /// Run as USER[:GROUP], numbers or names from the root's /etc/passwd and /etc/group.
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Working directory of the command (absolute) [default: /].
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// The zone's hostname [default: zone].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    #[command(flatten)]
    pub shape: ZoneShape,

    #[command(flatten)]
    pub isolation: crate::isolation_args::IsolationArgs,

    #[command(flatten)]
    pub identity: crate::authority_args::AuthorityArgs,

    /// The zone's network: `none` (loopback only), `bridge` (an address on the host's zones0
    /// bridge, reachable from the host; with -p for ports), or `ns:PATH`, a network namespace
    /// holding one veth with its addresses and routes (as CNI or `ip netns add` + veth make
    /// it), which the zone then joins.
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = crate::network::NetworkMode::from_str)]
    pub network: crate::network::NetworkMode,

    /// Publish a zone's TCP port on the host: `HOST_PORT:ZONE_PORT` or
    /// `HOST_IP:HOST_PORT:ZONE_PORT` (repeatable; needs --network bridge).
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:ZONE", value_parser = zone_net::ports::PortMapping::from_str)]
    pub publish: Vec<zone_net::ports::PortMapping>,

    /// Set an environment variable for the command (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<String>,

    /// Stream zonectl's standard input to the command (its stdin closes at our end of file).
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Give the command a terminal: its stdin, stdout and stderr are a pseudo-terminal in the
    /// zone, ours is put in raw mode and its window size follows ours.
    #[arg(short = 't', long = "tty")]
    pub tty: bool,

    /// Start the zone without a vTPM: no measured boot, and `zonectl attest` cannot vouch for
    /// it. By default every zone gets one (swtpm, started by the VMM).
    #[arg(long)]
    pub no_tpm: bool,

    /// The zone's Linux kernel (bzImage).
    #[arg(long, value_name = "PATH", env = "ZONES_KERNEL")]
    pub kernel: PathBuf,

    /// The zone's initrd, holding the zone agent (built by images/initramfs/build).
    #[arg(long, value_name = "PATH", env = "ZONES_INITRD")]
    pub initrd: PathBuf,

    /// The VMM binary [default: zone-vmm next to zonectl, else on PATH].
    #[arg(long, value_name = "PATH")]
    pub vmm: Option<PathBuf>,

    /// Show the zone's serial console instead of saving it to the state directory's console.log.
    #[arg(long)]
    pub keep_console: bool,

    /// Start the zone even on a host where it is known not to boot (PVM).
    #[arg(long)]
    pub force: bool,

    /// Directory holding zones' state directories.
    #[arg(long, value_name = "DIR", env = "ZONES_STATE_ROOT", default_value = DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,

    /// Run in the zone's own busybox userland: no image, every argument is the command.
    #[arg(long, conflicts_with = "rootfs")]
    pub bare: bool,
    /// The image store's directory.
    #[arg(long = "store", value_name = "DIR", env = "ZONES_IMAGE_STORE", default_value = zone_image::DEFAULT_STORE_ROOT)]
    pub store: PathBuf,
    /// IMAGE and then the command with its arguments (with --bare or --rootfs: only the
    /// command). Use `--` before a command whose arguments start with `-`.
    #[arg(
        value_name = "IMAGE [CMD]...",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// A zone's virtual hardware, as `run` and `reference` take it.
#[derive(Debug, Clone, Args)]
pub struct ZoneShape {
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub cpus: u32,

    /// Guest memory: a whole number of MiB, written like 256M or 1G.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_memory)]
    pub memory: Size,

    /// Attach a disk image as a virtio block device (repeatable; ",ro" for read-only).
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = DiskSpec::from_str)]
    pub disks: Vec<DiskSpec>,
}

/// A `--disk` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
}

impl FromStr for DiskSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (path, read_only) = match text.rsplit_once(',') {
            Some((path, "ro")) => (path, true),
            Some((path, "rw")) => (path, false),
            Some((_, option)) => {
                return Err(format!("unknown disk option {option:?} (only \"ro\")"))
            }
            None => (text, false),
        };
        if path.is_empty() {
            return Err("disk path is empty".to_string());
        }
        Ok(DiskSpec {
            path: PathBuf::from(path),
            read_only,
        })
    }
}

/// File systems `--rootfs` accepts.
pub const ROOTFS_TYPES: [&str; 2] = ["ext4", "erofs"];

/// A `--rootfs` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsSpec {
    pub path: PathBuf,
    /// One of [`ROOTFS_TYPES`].
    pub fstype: String,
}

impl FromStr for RootfsSpec {
    type Err = String;

    /// `PATH` or `PATH:FSTYPE`; a last `:` part holding a `/` belongs to the path.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (path, fstype) = match text.rsplit_once(':') {
            Some((path, fstype)) if !fstype.contains('/') => (path, fstype),
            _ => (text, "ext4"),
        };
        if !ROOTFS_TYPES.contains(&fstype) {
            return Err(format!(
                "unknown rootfs type {fstype:?} (one of {})",
                ROOTFS_TYPES.join(", ")
            ));
        }
        if path.is_empty() {
            return Err("rootfs path is empty".to_string());
        }
        Ok(RootfsSpec {
            path: PathBuf::from(path),
            fstype: fstype.to_string(),
        })
    }
}

impl DiskSpec {
    /// The `--disk` value for the VMM.
    pub fn to_vmm_arg(&self) -> String {
        let path = self.path.display();
        if self.read_only {
            format!("{path},ro")
        } else {
            path.to_string()
        }
    }
}

fn parse_memory(text: &str) -> Result<Size, String> {
    let size: Size = text.parse().map_err(|e| format!("{e}"))?;
    if size.whole_mib().is_none() {
        return Err(format!("{text} is not a whole number of MiB"));
    }
    if size < MIN_MEMORY {
        return Err(format!(
            "{text} is too little; a zone needs at least {MIN_MEMORY}"
        ));
    }
    Ok(size)
}

fn parse_name(text: &str) -> Result<String, String> {
    let ok = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if text.is_empty() || !ok || text.starts_with(['-', '.']) {
        return Err(format!(
            "{text:?} is not a zone name (letters, digits, '-', '_', '.'; not first '-' or '.')"
        ));
    }
    Ok(text.to_string())
}

fn parse_env(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(text.to_string()),
        _ => Err(format!("{text:?} is not K=V")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["zonectl", "run", "--kernel", "/k", "--initrd", "/i"]
            .iter()
            .chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Run(run) => run,
            _ => panic!("parsed as another verb"),
        })
    }

    #[test]
    fn test_cli_run_defaults_applied() {
        let run = parse(&["--", "echo", "hi"]).unwrap();

        assert_eq!(run.shape.cpus, 1);
        assert_eq!(run.shape.memory, Size::from_mib(256));
        assert!(run.shape.disks.is_empty() && run.env.is_empty());
        assert!(run.rootfs.is_none() && run.user.is_none() && run.workdir.is_none());
        assert!(!run.interactive && !run.tty && !run.keep_console && !run.force);
        assert_eq!(run.vmm, None);
        assert_eq!(run.kernel, PathBuf::from("/k"));
        assert_eq!(run.args, ["echo", "hi"]);
    }

    #[test]
    fn test_cli_run_all_options_parsed() {
        let run = parse(&[
            "--cpus",
            "2",
            "--memory",
            "1G",
            "--disk",
            "/a.img",
            "--disk",
            "/b.img,ro",
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "-i",
            "--vmm",
            "/v",
            "--keep-console",
            "--force",
            "--",
            "ls",
            "-l",
        ])
        .unwrap();

        assert_eq!(run.shape.cpus, 2);
        assert_eq!(run.shape.memory, Size::from_mib(1024));
        assert_eq!(
            run.shape.disks,
            [
                DiskSpec {
                    path: "/a.img".into(),
                    read_only: false
                },
                DiskSpec {
                    path: "/b.img".into(),
                    read_only: true
                }
            ]
        );
        assert_eq!(run.env, ["A=1", "B=x=y"]);
        assert!(run.interactive && run.keep_console && run.force);
        assert_eq!(run.vmm, Some(PathBuf::from("/v")));
        assert_eq!(run.args, ["ls", "-l"]);
    }

    #[test]
    fn test_cli_run_command_flags_after_dashes_kept() {
        let run = parse(&["--", "sh", "-c", "--cpus"]).unwrap();

        assert_eq!(run.args, ["sh", "-c", "--cpus"]);
        assert_eq!(run.shape.cpus, 1);
    }

    #[test]
    fn test_cli_run_image_then_command_flags_after_image_kept() {
        let run = parse(&["--cpus", "2", "busybox", "sh", "-c", "exit 7", "--memory"]).unwrap();

        assert_eq!(run.args, ["busybox", "sh", "-c", "exit 7", "--memory"]);
        assert_eq!(run.shape.cpus, 2);
        assert!(!run.bare);
    }

    #[test]
    fn test_cli_run_bare_conflicts_with_rootfs() {
        assert!(parse(&["--bare", "--rootfs", "/r.ext4", "true"]).is_err());
    }

    #[test]
    fn test_cli_run_bad_values_rejected() {
        assert!(parse(&["--cpus", "0", "--", "true"]).is_err());
        assert!(parse(&["--memory", "1500K", "--", "true"]).is_err());
        assert!(parse(&["--memory", "8M", "--", "true"]).is_err());
        assert!(parse(&["--memory", "lots", "--", "true"]).is_err());
        assert!(parse(&["-e", "NOVALUE", "--", "true"]).is_err());
        assert!(parse(&["-e", "=v", "--", "true"]).is_err());
        assert!(parse(&["--disk", "/a.img,rx", "--", "true"]).is_err());
        assert!(parse(&["--rootfs", "/a.img:xfs", "--", "true"]).is_err());
        assert!(parse(&["--rootfs", ":ext4", "--", "true"]).is_err());
    }

    #[test]
    fn test_cli_run_container_options_parsed() {
        let run = parse(&[
            "--rootfs",
            "/img.erofs:erofs",
            "-u",
            "nobody:nogroup",
            "-w",
            "/tmp",
            "--hostname",
            "web",
            "--",
            "id",
        ])
        .unwrap();

        assert_eq!(
            run.rootfs,
            Some(RootfsSpec {
                path: "/img.erofs".into(),
                fstype: "erofs".into()
            })
        );
        assert_eq!(run.user.as_deref(), Some("nobody:nogroup"));
        assert_eq!(run.workdir.as_deref(), Some("/tmp"));
        assert_eq!(run.hostname.as_deref(), Some("web"));
    }

    #[test]
    fn test_cli_run_detach_name_rm_parsed() {
        let run = parse(&["-d", "--name", "web", "--rm", "busybox", "sleep", "9"]).unwrap();

        assert!(run.detach && run.auto_remove);
        assert_eq!(run.name.as_deref(), Some("web"));
        assert_eq!(run.args, ["busybox", "sleep", "9"]);
    }

    #[test]
    fn test_cli_run_detach_bad_combinations_rejected() {
        assert!(parse(&["-d", "-i", "busybox", "cat"]).is_err());
        assert!(parse(&["--name", "a/b", "busybox"]).is_err());
        assert!(parse(&["--name", "-x", "busybox"]).is_err());
    }

    #[test]
    fn test_rootfs_spec_default_ext4_and_colons_in_path() {
        let plain: RootfsSpec = "/img.ext4".parse().unwrap();
        let dir_colon: RootfsSpec = "/a:b/img".parse().unwrap();

        assert_eq!(plain.fstype, "ext4");
        assert_eq!(dir_colon.path, PathBuf::from("/a:b/img"));
        assert_eq!(dir_colon.fstype, "ext4");
    }

    #[test]
    fn test_disk_spec_vmm_arg_round_trips() {
        for text in ["/a.img", "/b.img,ro"] {
            let disk: DiskSpec = text.parse().unwrap();

            assert_eq!(disk.to_vmm_arg(), text);
        }
    }
}
