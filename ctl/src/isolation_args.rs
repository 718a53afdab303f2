//! `zonectl run`'s container settings beyond the command, named as `docker run` names them:
//! `--read-only`, `--cap-add`/`--cap-drop`, `--ulimit`, `--security-opt no-new-privileges`,
//! `--tmpfs`. They become the OCI-style fields of the agent's CreateContainer; the agent
//! checks every name and value again.

use clap::Args;
use zone_proto::agent::v1::{Capabilities, Mount, Rlimit};

/// The capabilities a container gets unless told otherwise: Docker's default set, as the
/// agent's own default.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[derive(Debug, Clone, Default, Args)]
pub struct IsolationArgs {
    /// Mount the container's root file system read-only (--tmpfs mounts stay writable).
    #[arg(long)]
    pub read_only: bool,
    /// Add a capability to the default set (e.g. NET_ADMIN; repeatable).
    #[arg(long = "cap-add", value_name = "CAP", value_parser = parse_capability)]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (e.g. NET_RAW, or ALL; repeatable).
    #[arg(long = "cap-drop", value_name = "CAP", value_parser = parse_capability)]
    pub cap_drop: Vec<String>,
    /// A resource limit: NAME=SOFT[:HARD], NAME as in `ulimit` (nofile, nproc, core, ...).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit)]
    pub ulimits: Vec<Rlimit>,
    /// Security options; `no-new-privileges` is the one there is.
    #[arg(long = "security-opt", value_name = "OPT", value_parser = ["no-new-privileges"])]
    pub security_opts: Vec<String>,
    /// Mount a tmpfs at PATH in the container, with mount options after a colon
    /// (e.g. /cache:size=64m,mode=1777; repeatable).
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]", value_parser = parse_tmpfs)]
    pub tmpfs: Vec<Mount>,
}

impl IsolationArgs {
    pub fn no_new_privileges(&self) -> bool {
        self.security_opts.iter().any(|o| o == "no-new-privileges")
    }

    /// The capability sets, or `None` for the agent's default when nothing was added or
    /// dropped.
    pub fn capabilities(&self) -> Option<Capabilities> {
        if self.cap_add.is_empty() && self.cap_drop.is_empty() {
            return None;
        }
        let drop_all = self.cap_drop.iter().any(|c| c == "CAP_ALL");
        let mut set: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop_all && !self.cap_drop.contains(c))
            .collect();
        for cap in &self.cap_add {
            if !set.contains(cap) {
                set.push(cap.clone());
            }
        }
        Some(Capabilities {
            bounding: set.clone(),
            effective: set.clone(),
            permitted: set,
            inheritable: Vec::new(),
            ambient: Vec::new(),
        })
    }
}

/// `net_raw`, `NET_RAW` and `CAP_NET_RAW` all name CAP_NET_RAW.
fn parse_capability(text: &str) -> Result<String, String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper.is_empty() || !upper.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{text:?} is not a capability name"));
    }
    Ok(if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    })
}

/// `nofile=1024:2048` → RLIMIT_NOFILE soft 1024 hard 2048; one number sets both.
fn parse_ulimit(text: &str) -> Result<Rlimit, String> {
    let bad = || format!("{text:?} is not NAME=SOFT[:HARD], e.g. nofile=1024:2048");
    let (name, values) = text.split_once('=').ok_or_else(bad)?;
    let number = |v: &str| match v {
        "unlimited" | "-1" => Ok(u64::MAX),
        v => v.parse::<u64>().map_err(|_| bad()),
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (number(soft)?, number(hard)?),
        None => (number(values)?, number(values)?),
    };
    if soft > hard {
        return Err(format!("{text:?}: the soft limit is above the hard one"));
    }
    Ok(Rlimit {
        r#type: format!("RLIMIT_{}", name.trim().to_ascii_uppercase()),
        soft,
        hard,
    })
}

/// `/cache:size=64m,mode=1777` → a tmpfs mount with those options.
fn parse_tmpfs(text: &str) -> Result<Mount, String> {
    let (path, options) = text.split_once(':').unwrap_or((text, ""));
    if !path.starts_with('/') {
        return Err(format!("--tmpfs {text:?}: the path must be absolute"));
    }
    Ok(Mount {
        destination: path.to_string(),
        r#type: "tmpfs".to_string(),
        source: "tmpfs".to_string(),
        options: options
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_capabilities_add_and_drop_from_default() {
        let args = IsolationArgs {
            cap_add: vec![parse_capability("net_admin").unwrap()],
            cap_drop: vec![parse_capability("NET_RAW").unwrap()],
            ..Default::default()
        };

        let caps = args.capabilities().unwrap();

        assert!(caps.bounding.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.effective.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(caps.bounding.len(), DEFAULT_CAPABILITIES.len());
        assert!(caps.ambient.is_empty());
    }

    #[test]
    fn test_capabilities_drop_all_then_add_one() {
        let args = IsolationArgs {
            cap_add: vec!["CAP_CHOWN".into()],
            cap_drop: vec![parse_capability("all").unwrap()],
            ..Default::default()
        };

        assert_eq!(args.capabilities().unwrap().permitted, ["CAP_CHOWN"]);
        assert_eq!(IsolationArgs::default().capabilities(), None);
    }

    #[test]
    fn test_parse_ulimit_forms_and_errors() {
        let limit = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!(
            (limit.r#type.as_str(), limit.soft, limit.hard),
            ("RLIMIT_NOFILE", 1024, 2048)
        );
        assert_eq!(parse_ulimit("core=unlimited").unwrap().hard, u64::MAX);
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("nofile=2048:1024")
            .unwrap_err()
            .contains("soft"));
        assert!(parse_ulimit("nofile=lots").is_err());
    }

    #[test]
    fn test_parse_tmpfs_options_and_relative_path() {
        let mount = parse_tmpfs("/cache:size=64m,mode=1777").unwrap();
        assert_eq!(mount.destination, "/cache");
        assert_eq!(mount.options, ["size=64m", "mode=1777"]);
        assert!(parse_tmpfs("cache").is_err());
    }

    #[test]
    fn test_parse_capability_rejects_garbage() {
        assert_eq!(parse_capability("sys_admin").unwrap(), "CAP_SYS_ADMIN");
        assert!(parse_capability("net raw").is_err());
    }
}
