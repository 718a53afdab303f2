//! Linux capabilities by their OCI names (`"CAP_NET_RAW"`, runtime-spec `config.md`
//! "capabilities"), as bit sets, and the checks that a set of the five sets can be applied
//! by capset(2) and prctl(2) (capabilities(7), "Transformation of capabilities during
//! execve()").

use std::fmt;

/// Every capability Linux 6.12 knows, in bit order (`include/uapi/linux/capability.h`).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default set (moby `oci/caps/defaults.go`), given to a process whose config
/// names no capabilities.
const DEFAULT_NAMES: [&str; 14] = [
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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapError {
    #[error("unknown capability {0:?} (expected a name like \"CAP_NET_RAW\")")]
    Unknown(String),
    #[error("capability {capability} is in the {set} set but not in the {superset} set")]
    NotSubset {
        capability: &'static str,
        set: &'static str,
        superset: &'static str,
    },
    #[error("capability {0} is not known to this kernel (cap_last_cap {1})")]
    NotInKernel(&'static str, u32),
}

/// One capability: its bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(u8);

impl Capability {
    /// The capability named `name` exactly as in the runtime spec ("CAP_NET_RAW").
    pub fn from_name(name: &str) -> Result<Self, CapError> {
        NAMES
            .iter()
            .position(|n| *n == name)
            .map(|bit| Capability(bit as u8))
            .ok_or_else(|| CapError::Unknown(name.to_string()))
    }

    pub fn name(self) -> &'static str {
        NAMES[usize::from(self.0)]
    }

    pub fn bit(self) -> u32 {
        u32::from(self.0)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities, as the kernel's 64-bit mask.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    /// The set of the capabilities named in `names`; the first unknown name is the error.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, CapError> {
        names.iter().try_fold(CapSet::EMPTY, |set, name| {
            Ok(set.with(Capability::from_name(name.as_ref())?))
        })
    }

    pub fn with(self, cap: Capability) -> Self {
        CapSet(self.0 | 1 << cap.0)
    }

    pub fn contains(self, cap: Capability) -> bool {
        self.0 & (1 << cap.0) != 0
    }

    /// The kernel's mask (bit n = capability n), as in /proc/PID/status.
    pub fn mask(self) -> u64 {
        self.0
    }

    pub fn iter(self) -> impl Iterator<Item = Capability> {
        (0..NAMES.len() as u8)
            .map(Capability)
            .filter(move |c| self.contains(*c))
    }

    /// The first capability of `self` that `other` lacks.
    fn first_outside(self, other: CapSet) -> Option<Capability> {
        CapSet(self.0 & !other.0).iter().next()
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Capability::name))
            .finish()
    }
}

/// The five capability sets of a process (runtime-spec `process.capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilitySets {
    pub bounding: CapSet,
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
    pub ambient: CapSet,
}

impl CapabilitySets {
    /// Checks that the kernel can apply the sets in the order the child does (bounding drop,
    /// capset, ambient raise): effective and inheritable within permitted... see each check.
    pub fn check(&self, last_cap: u32) -> Result<(), CapError> {
        let all = [
            self.bounding,
            self.effective,
            self.permitted,
            self.inheritable,
            self.ambient,
        ];
        if let Some(cap) = all
            .iter()
            .flat_map(|s| s.iter())
            .find(|c| c.bit() > last_cap)
        {
            return Err(CapError::NotInKernel(cap.name(), last_cap));
        }
        // capset(2): the new effective set must lie within the new permitted set, and the new
        // inheritable set within the bounding set.
        let subsets = [
            (self.effective, "effective", self.permitted, "permitted"),
            (self.inheritable, "inheritable", self.bounding, "bounding"),
            // PR_CAP_AMBIENT_RAISE: only capabilities both permitted and inheritable.
            (self.ambient, "ambient", self.permitted, "permitted"),
            (self.ambient, "ambient", self.inheritable, "inheritable"),
        ];
        for (set, name, superset, superset_name) in subsets {
            if let Some(cap) = set.first_outside(superset) {
                return Err(CapError::NotSubset {
                    capability: cap.name(),
                    set: name,
                    superset: superset_name,
                });
            }
        }
        Ok(())
    }
}

/// Docker's default capabilities: bounding, effective and permitted; no inheritable or
/// ambient ones (as Docker since 20.10.14).
pub fn default_capabilities() -> CapabilitySets {
    let set = CapSet::from_names(&DEFAULT_NAMES).expect("the default names are all known");
    CapabilitySets {
        bounding: set,
        effective: set,
        permitted: set,
        inheritable: CapSet::EMPTY,
        ambient: CapSet::EMPTY,
    }
}

/// The highest capability number the running kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn kernel_last_cap() -> std::io::Result<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?;
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_capability_from_name_known_bits() {
        assert_eq!(Capability::from_name("CAP_CHOWN").unwrap().bit(), 0);
        assert_eq!(Capability::from_name("CAP_NET_RAW").unwrap().bit(), 13);
        assert_eq!(Capability::from_name("CAP_SYS_ADMIN").unwrap().bit(), 21);
        assert_eq!(
            Capability::from_name("CAP_CHECKPOINT_RESTORE")
                .unwrap()
                .bit(),
            40
        );
    }

    #[test]
    fn test_capability_from_name_unknown_named_in_error() {
        for bad in ["NET_RAW", "cap_net_raw", "CAP_NET_RAWX", "", "CAP_"] {
            let err = Capability::from_name(bad).unwrap_err();
            assert_eq!(err, CapError::Unknown(bad.to_string()));
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn test_capset_from_names_first_unknown_is_error() {
        let err = CapSet::from_names(&["CAP_KILL", "CAP_BOGUS", "ALSO_BAD"]).unwrap_err();

        assert_eq!(err, CapError::Unknown("CAP_BOGUS".into()));
    }

    #[test]
    fn test_default_capabilities_docker_mask() {
        let caps = default_capabilities();

        // Docker's default CapEff for root, as /proc/self/status shows it.
        assert_eq!(caps.bounding.mask(), 0x0000_0000_a804_25fb);
        assert_eq!(caps.effective, caps.bounding);
        assert_eq!(caps.permitted, caps.bounding);
        assert_eq!(caps.inheritable, CapSet::EMPTY);
        assert_eq!(caps.ambient, CapSet::EMPTY);
        assert!(caps.check(40).is_ok());
    }

    #[test]
    fn test_capability_sets_check_subsets() {
        let raw = CapSet::from_names(&["CAP_NET_RAW"]).unwrap();
        let mut caps = default_capabilities();
        caps.ambient = raw;
        assert_eq!(
            caps.check(40),
            Err(CapError::NotSubset {
                capability: "CAP_NET_RAW",
                set: "ambient",
                superset: "inheritable"
            })
        );
        caps.inheritable = raw;
        assert!(caps.check(40).is_ok());

        caps.effective = CapSet::from_names(&["CAP_SYS_ADMIN"]).unwrap();
        let err = caps.check(40).unwrap_err();
        assert!(err.to_string().contains("CAP_SYS_ADMIN"), "{err}");

        let mut caps = default_capabilities();
        caps.inheritable = CapSet::from_names(&["CAP_BPF"]).unwrap();
        assert!(matches!(
            caps.check(40),
            Err(CapError::NotSubset {
                set: "inheritable",
                ..
            })
        ));
    }

    #[test]
    fn test_capability_sets_check_newer_than_kernel_rejected() {
        let mut caps = default_capabilities();
        caps.bounding = caps
            .bounding
            .with(Capability::from_name("CAP_BPF").unwrap());

        assert_eq!(caps.check(37), Err(CapError::NotInKernel("CAP_BPF", 37)));
        assert!(caps.check(40).is_ok());
    }
}
