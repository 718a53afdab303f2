//! From the wire (`zone.agent.v1` messages) to the container module's checked types. Every
//! field is parsed here; a value the agent cannot honour is refused with its name, never
//! dropped.

use std::path::PathBuf;

use zone_proto::agent::v1::{
    Capabilities, ContainerRootfs, CreateContainerRequest, Mount, ProcessSpec,
    UpdateContainerRequest,
};

use crate::container::{
    CapSet, CapabilitySets, ContainerConfig, ContainerId, Limit, Limits, MountKind, MountOptions,
    MountSpec, ProcessConfig, Rlimit, RootfsSource, RootfsSpec,
};
use crate::request_error::{report, RequestError};

/// Mount options that ask for nothing we do differently: access-time and propagation
/// flags (every container mount is private to the container's namespace anyway), and the
/// devpts options the agent always uses.
const NO_OP_MOUNT_OPTIONS: &[&str] = &[
    "rw",
    "relatime",
    "norelatime",
    "strictatime",
    "noatime",
    "nodiratime",
    "private",
    "rprivate",
    "slave",
    "rslave",
    "newinstance",
    "ptmxmode=0666",
    "gid=5",
    "mode=0620",
];

fn invalid(error: &dyn std::error::Error) -> RequestError {
    RequestError::InvalidArgument(report(error))
}

/// The container's configuration; `None` for a container without a root file system of its
/// own (the zone's userland), which takes no isolation settings.
pub fn container_config(
    request: &CreateContainerRequest,
) -> Result<Option<ContainerConfig>, RequestError> {
    let id = ContainerId::new(&request.container_id).map_err(|e| invalid(&e))?;
    let Some(rootfs) = &request.rootfs else {
        let refused = [
            (request.readonly_rootfs, "readonly_rootfs"),
            (!request.mounts.is_empty(), "mounts"),
            (request.memory_limit_bytes != 0, "memory_limit_bytes"),
        ];
        if let Some((_, field)) = refused.iter().find(|(set, _)| *set) {
            return Err(RequestError::InvalidArgument(format!(
                "{field} needs a container root file system (rootfs)"
            )));
        }
        return Ok(None);
    };
    let mut config = ContainerConfig::new(id, RootfsSource::Device(rootfs_spec(rootfs)?));
    config.readonly_rootfs = request.readonly_rootfs;
    config.hostname = (!request.hostname.is_empty()).then(|| request.hostname.clone());
    config.mounts = request
        .mounts
        .iter()
        .map(mount_spec)
        .collect::<Result<_, _>>()?;
    config.memory_limit = (request.memory_limit_bytes != 0).then_some(request.memory_limit_bytes);
    config.check().map_err(|e| invalid(&e))?;
    Ok(Some(config))
}

/// Smallest and largest `cpu.max` period the kernel takes, and the smallest quota (µs).
const CPU_PERIOD_US: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
const CPU_QUOTA_MIN_US: i64 = 1_000;

/// The limits of an UpdateContainer request, checked.
pub fn limits(request: &UpdateContainerRequest) -> Result<Limits, RequestError> {
    let bad = |message: String| Err(RequestError::InvalidArgument(message));
    let memory = match request.memory_limit_bytes {
        Some(0) => return bad("memory_limit_bytes 0 leaves no memory to run in".to_string()),
        other => other,
    };
    let cpu = match (request.cpu_quota_us, request.cpu_period_us) {
        (None, None) => None,
        (Some(quota), Some(period)) => {
            if !CPU_PERIOD_US.contains(&period) {
                return bad(format!(
                    "cpu_period_us {period} is outside 1000..=1000000 (1 ms to 1 s)"
                ));
            }
            let quota = match u64::try_from(quota) {
                Err(_) | Ok(0) => Limit::Max,
                Ok(_) if quota < CPU_QUOTA_MIN_US => {
                    return bad(format!("cpu_quota_us {quota} is below 1000 (1 ms)"))
                }
                Ok(quota) => Limit::At(quota),
            };
            Some((quota, period))
        }
        _ => return bad("cpu_quota_us and cpu_period_us go together".to_string()),
    };
    let pids = request.pids_limit.map(|n| match u64::try_from(n) {
        Ok(n) if n > 0 => Limit::At(n),
        _ => Limit::Max,
    });
    Ok(Limits { memory, cpu, pids })
}

fn rootfs_spec(rootfs: &ContainerRootfs) -> Result<RootfsSpec, RequestError> {
    RootfsSpec::new(&rootfs.device, &rootfs.fstype).map_err(|e| invalid(&e))
}

fn mount_spec(mount: &Mount) -> Result<MountSpec, RequestError> {
    let bad = |what: String| {
        RequestError::InvalidArgument(format!("mount on {:?}: {what}", mount.destination))
    };
    let mut options = MountOptions::default();
    let (mut size, mut mode, mut bind, mut recursive) = (None, None, false, false);
    for option in &mount.options {
        match option.as_str() {
            "ro" => options.readonly = true,
            "nosuid" => options.nosuid = true,
            "nodev" => options.nodev = true,
            "noexec" => options.noexec = true,
            "bind" => bind = true,
            "rbind" => (bind, recursive) = (true, true),
            o if NO_OP_MOUNT_OPTIONS.contains(&o) => {}
            o => {
                if let Some(value) = o.strip_prefix("size=") {
                    size =
                        Some(parse_size(value).ok_or_else(|| bad(format!("bad size {value:?}")))?);
                } else if let Some(value) = o.strip_prefix("mode=") {
                    let parsed = u32::from_str_radix(value, 8)
                        .map_err(|_| bad(format!("bad mode {value:?} (octal)")))?;
                    mode = Some(parsed);
                } else {
                    return Err(bad(format!("option {o:?} is not supported")));
                }
            }
        }
    }
    let kind = match (mount.r#type.as_str(), bind) {
        ("bind", _) | ("none" | "", true) => MountKind::Bind {
            source: PathBuf::from(&mount.source),
            recursive,
        },
        ("tmpfs", false) => MountKind::Tmpfs { size, mode },
        ("proc", false) => MountKind::Proc,
        ("sysfs", false) => MountKind::Sysfs,
        ("devpts", false) => MountKind::Devpts,
        ("mqueue", false) => MountKind::Mqueue,
        (other, _) => {
            return Err(bad(format!(
                "type {other:?} is not one of bind, tmpfs, proc, sysfs, devpts, mqueue"
            )))
        }
    };
    if (size.is_some() || mode.is_some()) && !matches!(kind, MountKind::Tmpfs { .. }) {
        return Err(bad("size= and mode= apply to tmpfs only".to_string()));
    }
    Ok(MountSpec {
        destination: mount.destination.clone(),
        kind,
        options,
    })
}

/// A tmpfs size: bytes, or with a k, m or g suffix.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 10),
        (i, 'm' | 'M') => (&text[..i], 20),
        (i, 'g' | 'G') => (&text[..i], 30),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The process's configuration.
pub fn process_config(process: &ProcessSpec) -> Result<ProcessConfig, RequestError> {
    let mut config = ProcessConfig::new(&process.args);
    config.env = process.env.clone();
    config.cwd = process.cwd.clone();
    config.user = process.user.clone();
    config.additional_gids = process.additional_gids.clone();
    config.rlimits = process
        .rlimits
        .iter()
        .map(|limit| Rlimit::parse(&limit.r#type, limit.soft, limit.hard).map_err(|e| invalid(&e)))
        .collect::<Result<_, _>>()?;
    config.no_new_privileges = process.no_new_privileges;
    config.capabilities = process
        .capabilities
        .as_ref()
        .map(capability_sets)
        .transpose()?;
    config.terminal = process.terminal;
    config.check().map_err(|e| invalid(&e))?;
    Ok(config)
}

fn capability_sets(caps: &Capabilities) -> Result<CapabilitySets, RequestError> {
    let set = |names: &[String]| CapSet::from_names(names).map_err(|e| invalid(&e));
    Ok(CapabilitySets {
        bounding: set(&caps.bounding)?,
        effective: set(&caps.effective)?,
        permitted: set(&caps.permitted)?,
        inheritable: set(&caps.inheritable)?,
        ambient: set(&caps.ambient)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(
        memory: Option<u64>,
        cpu: Option<(i64, u64)>,
        pids: Option<i64>,
    ) -> UpdateContainerRequest {
        UpdateContainerRequest {
            container_id: "c1".into(),
            memory_limit_bytes: memory,
            cpu_quota_us: cpu.map(|(quota, _)| quota),
            cpu_period_us: cpu.map(|(_, period)| period),
            pids_limit: pids,
        }
    }

    #[test]
    fn test_limits_translated_max_for_unlimited() {
        assert_eq!(
            limits(&update(None, None, None)).unwrap(),
            Limits::default()
        );
        assert_eq!(
            limits(&update(Some(1 << 30), Some((50_000, 100_000)), Some(64))).unwrap(),
            Limits {
                memory: Some(1 << 30),
                cpu: Some((Limit::At(50_000), 100_000)),
                pids: Some(Limit::At(64)),
            }
        );
        let unlimited = limits(&update(None, Some((-1, 100_000)), Some(-1))).unwrap();
        assert_eq!(unlimited.cpu, Some((Limit::Max, 100_000)));
        assert_eq!(unlimited.pids, Some(Limit::Max));
    }

    #[test]
    fn test_limits_bad_values_refused_by_name() {
        let refused = |request: UpdateContainerRequest| match limits(&request) {
            Err(RequestError::InvalidArgument(message)) => message,
            other => panic!("{other:?}"),
        };

        assert!(refused(update(Some(0), None, None)).contains("memory_limit_bytes 0"));
        assert!(refused(update(None, Some((50_000, 999)), None)).contains("cpu_period_us 999"));
        assert!(refused(update(None, Some((50_000, 2_000_000)), None)).contains("cpu_period_us"));
        assert!(refused(update(None, Some((10, 100_000)), None)).contains("cpu_quota_us 10"));
        let mut quota_only = update(None, None, None);
        quota_only.cpu_quota_us = Some(50_000);
        assert!(refused(quota_only).contains("go together"));
    }

    fn mount(kind: &str, options: &[&str]) -> Mount {
        Mount {
            destination: "/data".into(),
            r#type: kind.into(),
            source: "/run/zone/volumes/data".into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn test_mount_spec_kinds_and_options() {
        let tmpfs = mount_spec(&mount("tmpfs", &["nosuid", "size=64m", "mode=1777"])).unwrap();
        assert_eq!(
            tmpfs.kind,
            MountKind::Tmpfs {
                size: Some(64 << 20),
                mode: Some(0o1777)
            }
        );
        assert!(tmpfs.options.nosuid && !tmpfs.options.readonly);
        let bind = mount_spec(&mount("none", &["rbind", "ro", "rprivate"])).unwrap();
        assert!(matches!(
            bind.kind,
            MountKind::Bind {
                recursive: true,
                ..
            }
        ));
        assert!(bind.options.readonly);
    }

    #[test]
    fn test_mount_spec_bad_values_named() {
        for (kind, options, named) in [
            ("nfs", &[][..], "nfs"),
            ("tmpfs", &["size=lots"][..], "lots"),
            ("tmpfs", &["mode=999"][..], "999"),
            ("tmpfs", &["suid-please"][..], "suid-please"),
            ("proc", &["size=1k"][..], "tmpfs only"),
        ] {
            let err = mount_spec(&mount(kind, options)).unwrap_err().to_string();
            assert!(err.contains(named), "{kind} {options:?}: {err}");
            assert!(err.contains("/data"), "{err}");
        }
    }

    #[test]
    fn test_process_config_bad_names_refused() {
        let mut spec = ProcessSpec {
            args: vec!["true".into()],
            ..Default::default()
        };
        spec.rlimits = vec![zone_proto::agent::v1::Rlimit {
            r#type: "RLIMIT_WHATEVER".into(),
            soft: 1,
            hard: 1,
        }];
        assert!(process_config(&spec)
            .unwrap_err()
            .to_string()
            .contains("RLIMIT_WHATEVER"));
        spec.rlimits.clear();
        spec.capabilities = Some(Capabilities {
            bounding: vec!["CAP_FLY".into()],
            ..Default::default()
        });
        assert!(process_config(&spec)
            .unwrap_err()
            .to_string()
            .contains("CAP_FLY"));
    }

    #[test]
    fn test_container_config_bare_refuses_isolation_fields() {
        let request = CreateContainerRequest {
            container_id: "c".into(),
            readonly_rootfs: true,
            ..Default::default()
        };
        let err = container_config(&request).unwrap_err().to_string();
        assert!(err.contains("readonly_rootfs"), "{err}");
    }
}
