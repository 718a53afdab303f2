//! Resource limits by their OCI names (runtime-spec `config.md`, "POSIX process
//! rlimits": `type` is an `RLIMIT_*` name from getrlimit(2), `soft` at most `hard`).

/// Every resource getrlimit(2) lists, by name.
const RESOURCES: [(&str, libc::__rlimit_resource_t); 16] = [
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RlimitError {
    #[error("unknown rlimit type {0:?} (expected a name like \"RLIMIT_NOFILE\")")]
    Unknown(String),
    #[error("{name}: soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard {
        name: &'static str,
        soft: u64,
        hard: u64,
    },
    #[error("{0} is given twice")]
    Duplicate(&'static str),
}

/// One resource that setrlimit(2) limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RlimitResource(usize);

impl RlimitResource {
    /// The resource named `name` exactly as in the runtime spec ("RLIMIT_NOFILE").
    pub fn from_name(name: &str) -> Result<Self, RlimitError> {
        RESOURCES
            .iter()
            .position(|(n, _)| *n == name)
            .map(RlimitResource)
            .ok_or_else(|| RlimitError::Unknown(name.to_string()))
    }

    pub fn name(self) -> &'static str {
        RESOURCES[self.0].0
    }

    /// The `resource` argument of setrlimit(2).
    pub fn raw(self) -> libc::__rlimit_resource_t {
        RESOURCES[self.0].1
    }
}

/// A checked limit: `soft <= hard`. `u64::MAX` is RLIM_INFINITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    resource: RlimitResource,
    soft: u64,
    hard: u64,
}

impl Rlimit {
    pub fn new(resource: RlimitResource, soft: u64, hard: u64) -> Result<Self, RlimitError> {
        if soft > hard {
            return Err(RlimitError::SoftAboveHard {
                name: resource.name(),
                soft,
                hard,
            });
        }
        Ok(Rlimit {
            resource,
            soft,
            hard,
        })
    }

    /// Parses an OCI `{type, soft, hard}` entry.
    pub fn parse(name: &str, soft: u64, hard: u64) -> Result<Self, RlimitError> {
        Rlimit::new(RlimitResource::from_name(name)?, soft, hard)
    }

    pub fn resource(&self) -> RlimitResource {
        self.resource
    }

    pub fn soft(&self) -> u64 {
        self.soft
    }

    pub fn hard(&self) -> u64 {
        self.hard
    }
}

/// Checks that no resource is limited twice.
pub fn check_unique(limits: &[Rlimit]) -> Result<(), RlimitError> {
    for (i, limit) in limits.iter().enumerate() {
        if limits[..i].iter().any(|l| l.resource == limit.resource) {
            return Err(RlimitError::Duplicate(limit.resource.name()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rlimit_parse_known_names() {
        let nofile = Rlimit::parse("RLIMIT_NOFILE", 1024, 4096).unwrap();

        assert_eq!(nofile.resource().raw(), libc::RLIMIT_NOFILE);
        assert_eq!(nofile.resource().name(), "RLIMIT_NOFILE");
        assert_eq!((nofile.soft(), nofile.hard()), (1024, 4096));
        for (name, raw) in RESOURCES {
            assert_eq!(RlimitResource::from_name(name).unwrap().raw(), raw);
        }
    }

    #[test]
    fn test_rlimit_parse_unknown_name_named_in_error() {
        for bad in ["NOFILE", "rlimit_nofile", "RLIMIT_FOO", ""] {
            let err = Rlimit::parse(bad, 1, 1).unwrap_err();
            assert_eq!(err, RlimitError::Unknown(bad.to_string()));
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn test_rlimit_soft_above_hard_rejected() {
        let err = Rlimit::parse("RLIMIT_NOFILE", 4097, 4096).unwrap_err();

        assert_eq!(
            err,
            RlimitError::SoftAboveHard {
                name: "RLIMIT_NOFILE",
                soft: 4097,
                hard: 4096
            }
        );
        assert!(Rlimit::parse("RLIMIT_CORE", u64::MAX, u64::MAX).is_ok());
    }

    #[test]
    fn test_check_unique_duplicate_named() {
        let a = Rlimit::parse("RLIMIT_NOFILE", 1, 2).unwrap();
        let b = Rlimit::parse("RLIMIT_NPROC", 1, 2).unwrap();
        let c = Rlimit::parse("RLIMIT_NOFILE", 2, 2).unwrap();

        assert!(check_unique(&[a, b]).is_ok());
        assert_eq!(
            check_unique(&[a, b, c]),
            Err(RlimitError::Duplicate("RLIMIT_NOFILE"))
        );
    }
}
