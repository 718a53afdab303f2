//! Checked forms of the container fields of a `RunCommandRequest` (and the pieces
//! [`super::config`] shares with it): every value from the host is validated here before the
//! agent mounts or sets anything with it.

use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use zone_proto::agent::v1::ContainerRootfs;

/// Longest hostname Linux accepts (`HOST_NAME_MAX`).
const HOSTNAME_MAX: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("rootfs device {0:?} is not a device name directly under /dev")]
    DevicePath(String),
    #[error("rootfs device {0} does not exist")]
    DeviceMissing(String),
    #[error("rootfs device {0} is not a block device")]
    NotBlockDevice(String),
    #[error("rootfs fstype {0:?} is not supported (ext4 or erofs)")]
    FsType(String),
    #[error("cwd {0:?} is not an absolute path without \"..\"")]
    Cwd(String),
    #[error("hostname {0:?} is not 1-64 letters, digits, '-' or '.'")]
    Hostname(String),
}

/// File systems a container root may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Erofs,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Erofs => "erofs",
        }
    }
}

/// A validated `ContainerRootfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsSpec {
    pub device: PathBuf,
    pub fstype: FsType,
}

impl RootfsSpec {
    /// Checks the message's syntax; [`RootfsSpec::check_device`] checks the device itself.
    pub fn parse(rootfs: &ContainerRootfs) -> Result<Self, SpecError> {
        RootfsSpec::new(&rootfs.device, &rootfs.fstype)
    }

    /// Checks a device name (`/dev/NAME`) and a file system type (`ext4`, `erofs`).
    pub fn new(device: &str, fstype: &str) -> Result<Self, SpecError> {
        let fstype = match fstype {
            "ext4" => FsType::Ext4,
            "erofs" => FsType::Erofs,
            other => return Err(SpecError::FsType(other.to_string())),
        };
        let name = device
            .strip_prefix("/dev/")
            .filter(|name| is_plain_name(name))
            .ok_or_else(|| SpecError::DevicePath(device.to_string()))?;
        Ok(RootfsSpec {
            device: Path::new("/dev").join(name),
            fstype,
        })
    }

    /// The device exists and is a block device (not a symlink, file or character device);
    /// returns its device number.
    pub fn check_device(&self) -> Result<u64, SpecError> {
        let shown = self.device.display().to_string();
        let meta = std::fs::symlink_metadata(&self.device)
            .map_err(|_| SpecError::DeviceMissing(shown.clone()))?;
        if !meta.file_type().is_block_device() {
            return Err(SpecError::NotBlockDevice(shown));
        }
        Ok(meta.rdev())
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The working directory as a C string: absolute, no `..`, no NUL; "/" when empty.
pub fn parse_cwd(cwd: &str) -> Result<CString, SpecError> {
    if cwd.is_empty() {
        return Ok(c"/".to_owned());
    }
    let path = Path::new(cwd);
    let clean = path.is_absolute()
        && path.components().all(|c| {
            matches!(
                c,
                Component::RootDir | Component::Normal(_) | Component::CurDir
            )
        });
    if !clean {
        return Err(SpecError::Cwd(cwd.to_string()));
    }
    CString::new(cwd).map_err(|_| SpecError::Cwd(cwd.to_string()))
}

/// Checks a hostname: 1 to 64 bytes of ASCII letters, digits, '-' and '.'.
pub fn check_hostname(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= HOSTNAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(SpecError::Hostname(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs(device: &str, fstype: &str) -> ContainerRootfs {
        ContainerRootfs {
            device: device.into(),
            fstype: fstype.into(),
        }
    }

    #[test]
    fn test_rootfs_spec_parse_valid_accepted() {
        let spec = RootfsSpec::parse(&rootfs("/dev/vda", "erofs")).unwrap();

        assert_eq!(spec.device, Path::new("/dev/vda"));
        assert_eq!(spec.fstype, FsType::Erofs);
    }

    #[test]
    fn test_rootfs_spec_parse_bad_device_rejected() {
        for device in [
            "",
            "vda",
            "/dev/",
            "/dev/..",
            "/dev/../etc/passwd",
            "/dev/disk/by-label/x",
            "/tmp/vda",
            "/dev/vda\0",
            "/dev/v da",
        ] {
            assert_eq!(
                RootfsSpec::parse(&rootfs(device, "ext4")),
                Err(SpecError::DevicePath(device.into())),
                "{device:?}"
            );
        }
    }

    #[test]
    fn test_rootfs_spec_parse_bad_fstype_rejected() {
        for fstype in ["", "xfs", "EXT4", "ext4,ro"] {
            assert_eq!(
                RootfsSpec::parse(&rootfs("/dev/vda", fstype)),
                Err(SpecError::FsType(fstype.into()))
            );
        }
    }

    #[test]
    fn test_rootfs_spec_check_device_non_block_rejected() {
        let null = RootfsSpec::parse(&rootfs("/dev/null", "ext4")).unwrap();
        let missing = RootfsSpec::parse(&rootfs("/dev/no-such-disk", "ext4")).unwrap();

        assert_eq!(
            null.check_device(),
            Err(SpecError::NotBlockDevice("/dev/null".into()))
        );
        assert_eq!(
            missing.check_device(),
            Err(SpecError::DeviceMissing("/dev/no-such-disk".into()))
        );
    }

    #[test]
    fn test_parse_cwd_absolute_accepted_empty_is_root() {
        assert_eq!(parse_cwd("").unwrap().as_c_str(), c"/");
        assert_eq!(parse_cwd("/tmp/x").unwrap().as_c_str(), c"/tmp/x");
    }

    #[test]
    fn test_parse_cwd_relative_dotdot_nul_rejected() {
        for cwd in ["tmp", "/tmp/../etc", "..", "/a\0b"] {
            assert_eq!(parse_cwd(cwd), Err(SpecError::Cwd(cwd.into())), "{cwd:?}");
        }
    }

    #[test]
    fn test_check_hostname_limits() {
        assert!(check_hostname("web-1.example").is_ok());
        assert!(check_hostname(&"a".repeat(64)).is_ok());
        for bad in ["", "has space", "semi;colon", &"a".repeat(65)] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }
}
