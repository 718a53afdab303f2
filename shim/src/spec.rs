//! The part of a bundle's OCI runtime spec (`config.json`) a zone uses, and its translation
//! into the agent's `CreateContainerRequest` (`zone.agent.v1`).
//!
//! Pod grouping comes from CRI's annotations: `io.kubernetes.cri.sandbox-id` (containerd) or
//! `io.kubernetes.cri-o.SandboxID` names the pod's sandbox, and every container of that pod
//! runs in the sandbox's zone. A spec without them is a pod of its own (`ctr run`).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::zone::PodFacts;
use thiserror::Error;
use zone_proto::agent::v1::{
    Capabilities, ContainerRootfs, CreateContainerRequest, Mount as AgentMount, ProcessSpec,
    Rlimit, UpdateContainerRequest,
};

pub const SANDBOX_ID_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.sandbox-id",
    "io.kubernetes.cri-o.SandboxID",
];
pub const CONTAINER_TYPE_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.container-type",
    "io.kubernetes.cri-o.ContainerType",
];
/// CRI's hint for the pod's memory (bytes), used to size the zone.
pub const SANDBOX_MEMORY_ANNOTATION: &str = "io.kubernetes.cri.sandbox-memory";
/// The pod's name and namespace, as containerd's CRI plugin annotates its containers.
pub const SANDBOX_NAME_ANNOTATION: &str = "io.kubernetes.cri.sandbox-name";
pub const SANDBOX_NAMESPACE_ANNOTATION: &str = "io.kubernetes.cri.sandbox-namespace";

/// Mounts every zone container has already (`agent.proto`, `Mount`).
const BUILT_IN_MOUNTS: [&str; 5] = ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"];
/// Mount types the agent can make inside the zone.
const ZONE_MOUNT_TYPES: [&str; 5] = ["tmpfs", "proc", "sysfs", "devpts", "mqueue"];

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("reading {0}")]
    Read(String, #[source] std::io::Error),
    #[error("parsing {0}")]
    Parse(String, #[source] serde_json::Error),
    #[error("the spec has no process")]
    NoProcess,
    #[error("Update: resources of type {0:?}, not the runtime spec's LinuxResources")]
    ResourcesType(String),
}

/// The type URL containerd gives the runtime spec's `LinuxResources` (JSON) in an Update.
const LINUX_RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    pub process: Option<Process>,
    pub root: Option<Root>,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    pub annotations: HashMap<String, String>,
    pub linux: Option<Linux>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Process {
    pub terminal: bool,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Option<Caps>,
    pub rlimits: Vec<OciRlimit>,
    pub no_new_privileges: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Caps {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
    pub inheritable: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OciRlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Linux {
    pub resources: Option<Resources>,
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    pub pids: Option<Pids>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Cpu {
    pub quota: Option<i64>,
    pub period: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pids {
    pub limit: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Memory {
    pub limit: Option<i64>,
}

/// The cgroup `cpu.max` period when a quota comes without one (the kernel's default).
const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

impl Resources {
    /// The resources of an Update request: `LinuxResources` as JSON in a protobuf `Any`.
    pub fn from_update(type_url: &str, json: &[u8]) -> Result<Resources, SpecError> {
        if type_url != LINUX_RESOURCES_TYPE_URL {
            return Err(SpecError::ResourcesType(type_url.to_string()));
        }
        serde_json::from_slice(json)
            .map_err(|e| SpecError::Parse("the Update's resources".into(), e))
    }

    /// The agent's request that applies these resources to a running container: what is
    /// set and positive (memory) or present (CPU quota, pids) changes, the rest stays.
    pub fn update_request(&self, id: &str) -> UpdateContainerRequest {
        let memory_limit_bytes = self
            .memory
            .as_ref()
            .and_then(|m| m.limit)
            .and_then(|limit| u64::try_from(limit).ok())
            .filter(|&limit| limit > 0);
        let cpu = self.cpu.as_ref().and_then(|cpu| {
            let quota = cpu.quota.filter(|&q| q != 0)?;
            Some((quota, cpu.period.unwrap_or(DEFAULT_CPU_PERIOD_US)))
        });
        UpdateContainerRequest {
            container_id: id.to_string(),
            memory_limit_bytes,
            cpu_quota_us: cpu.map(|(quota, _)| quota),
            cpu_period_us: cpu.map(|(_, period)| period),
            pids_limit: self.pids.as_ref().map(|p| p.limit),
        }
    }
}

impl Spec {
    /// Reads `<bundle>/config.json`.
    pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
        let path = bundle.join("config.json");
        let name = path.display().to_string();
        let text = std::fs::read(&path).map_err(|e| SpecError::Read(name.clone(), e))?;
        serde_json::from_slice(&text).map_err(|e| SpecError::Parse(name, e))
    }

    /// The pod this container belongs to: its sandbox's id, or its own.
    pub fn group_id(&self, own_id: &str) -> String {
        SANDBOX_ID_ANNOTATIONS
            .iter()
            .find_map(|key| self.annotations.get(*key))
            .filter(|id| !id.is_empty())
            .cloned()
            .unwrap_or_else(|| own_id.to_string())
    }

    /// Whether this container is a CRI pod sandbox (the pause container).
    pub fn is_cri_sandbox(&self) -> bool {
        CONTAINER_TYPE_ANNOTATIONS
            .iter()
            .any(|key| self.annotations.get(*key).is_some_and(|t| t == "sandbox"))
    }

    /// The network namespace to join, when the spec names one by path (CRI's pod network,
    /// prepared by CNI); `None`: a new, empty one (loopback only), or the host's when the spec
    /// has no network namespace at all (a host-network pod) — a zone has its own either way.
    pub fn network_namespace(&self) -> Option<&Path> {
        self.linux
            .as_ref()?
            .namespaces
            .iter()
            .find(|ns| ns.kind == "network" && !ns.path.is_empty())
            .map(|ns| Path::new(&ns.path))
    }

    /// The host file the spec binds onto /etc/resolv.conf (CRI's pod DNS settings).
    pub fn resolv_conf_source(&self) -> Option<&Path> {
        self.mounts
            .iter()
            .find(|m| m.destination == "/etc/resolv.conf" && m.source.starts_with('/'))
            .map(|m| Path::new(&m.source))
    }

    /// The pod's name and namespace, when CRI gave them.
    pub fn pod_facts(&self) -> PodFacts {
        let get = |key: &str| self.annotations.get(key).filter(|v| !v.is_empty()).cloned();
        PodFacts {
            name: get(SANDBOX_NAME_ANNOTATION),
            namespace: get(SANDBOX_NAMESPACE_ANNOTATION),
        }
    }

    /// The pod's memory hint in bytes, if CRI gave one.
    pub fn sandbox_memory(&self) -> Option<u64> {
        self.annotations
            .get(SANDBOX_MEMORY_ANNOTATION)
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0)
    }

    /// The agent's request for this container, its root file system on `device`.
    pub fn create_request(
        &self,
        id: &str,
        device: &str,
        stdin: bool,
    ) -> Result<CreateContainerRequest, SpecError> {
        let process = self.process.as_ref().ok_or(SpecError::NoProcess)?;
        let memory_limit_bytes = self
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .and_then(|r| r.memory.as_ref())
            .and_then(|m| m.limit)
            .and_then(|l| u64::try_from(l).ok())
            .unwrap_or(0);
        Ok(CreateContainerRequest {
            container_id: id.to_string(),
            rootfs: Some(ContainerRootfs {
                device: device.to_string(),
                fstype: "ext4".to_string(),
            }),
            readonly_rootfs: self.root.as_ref().is_some_and(|r| r.readonly),
            hostname: self.hostname.clone(),
            mounts: self.zone_mounts(),
            process: Some(process_spec(process, stdin)),
            memory_limit_bytes,
        })
    }

    /// The spec's mounts the agent can make in the zone. Host bind mounts (CRI's hosts,
    /// resolv.conf, volumes) cannot reach a zone without a shared file system; they are left
    /// out and logged.
    fn zone_mounts(&self) -> Vec<AgentMount> {
        let mut mounts = Vec::new();
        for mount in &self.mounts {
            let destination = mount.destination.trim_end_matches('/');
            if BUILT_IN_MOUNTS.contains(&destination) {
                continue;
            }
            let kind = if mount.kind.is_empty()
                && mount.options.iter().any(|o| o == "bind" || o == "rbind")
            {
                "bind"
            } else {
                mount.kind.as_str()
            };
            if !ZONE_MOUNT_TYPES.contains(&kind) {
                tracing::info!(destination, kind, source = %mount.source, "mount not available in a zone, left out");
                continue;
            }
            mounts.push(AgentMount {
                destination: mount.destination.clone(),
                r#type: kind.to_string(),
                source: String::new(),
                options: mount.options.clone(),
            });
        }
        mounts
    }
}

/// The agent's process spec for an OCI `process`.
pub fn process_spec(process: &Process, stdin: bool) -> ProcessSpec {
    ProcessSpec {
        args: process.args.clone(),
        env: process.env.clone(),
        cwd: process.cwd.clone(),
        user: format!("{}:{}", process.user.uid, process.user.gid),
        additional_gids: process.user.additional_gids.clone(),
        terminal: process.terminal,
        stdin,
        rlimits: process
            .rlimits
            .iter()
            .map(|r| Rlimit {
                r#type: r.kind.clone(),
                soft: r.soft,
                hard: r.hard,
            })
            .collect(),
        no_new_privileges: process.no_new_privileges,
        capabilities: process.capabilities.as_ref().map(|c| Capabilities {
            bounding: c.bounding.clone(),
            effective: c.effective.clone(),
            permitted: c.permitted.clone(),
            inheritable: c.inheritable.clone(),
            ambient: c.ambient.clone(),
        }),
    }
}

/// Parses an exec's process (the JSON body of containerd's `Any`).
pub fn parse_process(json: &[u8]) -> Result<Process, SpecError> {
    serde_json::from_slice(json).map_err(|e| SpecError::Parse("the exec process spec".into(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRI_CONTAINER: &str = r#"{
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 1000, "gid": 100, "additionalGids": [10]},
                    "args": ["sh", "-c", "echo hi"], "env": ["PATH=/bin"], "cwd": "/",
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "capabilities": {"bounding": ["CAP_KILL"]}},
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "pod1",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
                   {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/x/hosts", "options": ["rbind"]}],
        "annotations": {"io.kubernetes.cri.container-type": "container",
                        "io.kubernetes.cri.sandbox-id": "sb1"},
        "linux": {"resources": {"memory": {"limit": 67108864}}}
    }"#;

    #[test]
    fn test_group_id_cri_container_is_sandbox_id() {
        let spec: Spec = serde_json::from_str(CRI_CONTAINER).unwrap();
        assert_eq!(spec.group_id("c1"), "sb1");
        assert!(!spec.is_cri_sandbox());
    }

    #[test]
    fn test_pod_facts_from_cri_annotations_empty_or_absent_unknown() {
        let spec: Spec = serde_json::from_str(
            r#"{"annotations": {"io.kubernetes.cri.sandbox-name": "web",
                                "io.kubernetes.cri.sandbox-namespace": ""}}"#,
        )
        .unwrap();
        assert_eq!(
            spec.pod_facts(),
            PodFacts {
                name: Some("web".into()),
                namespace: None
            }
        );
        let spec: Spec = serde_json::from_str(CRI_CONTAINER).unwrap();
        assert_eq!(spec.pod_facts(), PodFacts::default());
    }

    #[test]
    fn test_group_id_plain_ctr_spec_is_own_id() {
        let spec: Spec = serde_json::from_str(r#"{"process": {"args": ["true"]}}"#).unwrap();
        assert_eq!(spec.group_id("t1"), "t1");
    }

    #[test]
    fn test_create_request_maps_user_mounts_and_limit() {
        let spec: Spec = serde_json::from_str(CRI_CONTAINER).unwrap();

        let req = spec.create_request("c1", "/dev/vdb", false).unwrap();

        let process = req.process.unwrap();
        assert_eq!(process.user, "1000:100");
        assert_eq!(process.additional_gids, [10]);
        assert_eq!(process.rlimits[0].r#type, "RLIMIT_NOFILE");
        assert_eq!(req.rootfs.unwrap().device, "/dev/vdb");
        assert!(req.readonly_rootfs);
        assert_eq!(req.memory_limit_bytes, 64 << 20);
        let destinations: Vec<_> = req.mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(
            destinations,
            ["/run"],
            "proc is built in, host binds cannot reach the zone"
        );
    }

    #[test]
    fn test_network_namespace_and_resolv_conf_from_cri_sandbox_spec() {
        let spec: Spec = serde_json::from_str(
            r#"{"linux": {"namespaces": [{"type": "pid"},
                    {"type": "network", "path": "/var/run/netns/cni-1234"}]},
                "mounts": [{"destination": "/etc/resolv.conf", "type": "bind",
                    "source": "/var/lib/cri/sandboxes/p1/resolv.conf", "options": ["rbind"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            spec.network_namespace(),
            Some(Path::new("/var/run/netns/cni-1234"))
        );
        assert_eq!(
            spec.resolv_conf_source(),
            Some(Path::new("/var/lib/cri/sandboxes/p1/resolv.conf"))
        );
    }

    #[test]
    fn test_network_namespace_none_without_path_or_network_namespace() {
        let new_empty: Spec =
            serde_json::from_str(r#"{"linux": {"namespaces": [{"type": "network"}]}}"#).unwrap();
        assert_eq!(new_empty.network_namespace(), None);
        let host_network: Spec =
            serde_json::from_str(r#"{"linux": {"namespaces": [{"type": "pid"}]}}"#).unwrap();
        assert_eq!(host_network.network_namespace(), None);
        assert_eq!(host_network.resolv_conf_source(), None);
    }

    #[test]
    fn test_parse_process_exec_json() {
        let p = parse_process(br#"{"args": ["ls"], "cwd": "/tmp", "terminal": true}"#).unwrap();
        assert_eq!(
            (p.args.len(), p.cwd.as_str(), p.terminal),
            (1, "/tmp", true)
        );
    }

    #[test]
    fn test_update_resources_from_linux_resources_json() {
        let json = br#"{"memory": {"limit": 33554432}, "cpu": {"quota": 50000, "period": 200000},
            "pids": {"limit": 32}}"#;

        let update = Resources::from_update(LINUX_RESOURCES_TYPE_URL, json)
            .unwrap()
            .update_request("c1");

        assert_eq!(update.container_id, "c1");
        assert_eq!(update.memory_limit_bytes, Some(32 << 20));
        assert_eq!(
            (update.cpu_quota_us, update.cpu_period_us),
            (Some(50_000), Some(200_000))
        );
        assert_eq!(update.pids_limit, Some(32));
    }

    #[test]
    fn test_update_resources_unset_values_left_alone_period_defaulted() {
        let update = Resources::from_update(
            LINUX_RESOURCES_TYPE_URL,
            br#"{"memory": {"limit": 0}, "cpu": {"quota": 25000}}"#,
        )
        .unwrap()
        .update_request("c1");

        assert_eq!(update.memory_limit_bytes, None);
        assert_eq!(
            (update.cpu_quota_us, update.cpu_period_us),
            (Some(25_000), Some(100_000))
        );
        assert_eq!(update.pids_limit, None);
    }

    #[test]
    fn test_update_resources_wrong_type_or_bad_json_refused() {
        let wrong = Resources::from_update("types.containerd.io/Other", b"{}").unwrap_err();
        let bad = Resources::from_update(LINUX_RESOURCES_TYPE_URL, b"{memory").unwrap_err();

        assert!(
            wrong.to_string().contains("types.containerd.io/Other"),
            "{wrong}"
        );
        assert!(matches!(bad, SpecError::Parse(..)), "{bad}");
    }
}
