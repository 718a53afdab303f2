//! Facts about what a zone boots that the host computes the same way for evidence
//! (`attest`) and for reference values (`reference`): the VMM's version, the digests of the
//! kernel and initrd files, and the zone's virtual hardware as the VMM measures it.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use zone_attest::evidence::{sha256_uri, ZoneManifest};
use zone_attest::measurements::PlatformConfig;

use crate::cli::DiskSpec;
use crate::size::Size;
use crate::vmm_process::ZONE_CMDLINE;
use crate::zone_state::BootRecord;

/// The guest CID the VMM gives a zone's vsock device (zonectl does not choose another).
const GUEST_CID: u64 = 3;
/// The TPM interface the VMM gives a zone.
const TPM_INTERFACE: &str = "crb";

/// The VMM's version line (`zone-vmm 0.1.0`), as it measures it into PCR 0.
pub fn vmm_version(vmm: &Path) -> anyhow::Result<String> {
    let out = Command::new(vmm)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", vmm.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !version.starts_with("zone-vmm ") {
        bail!(
            "{} --version printed {version:?}: is it zone-vmm?",
            vmm.display()
        );
    }
    Ok(version)
}

/// `sha256:<hex>` of a file's contents.
pub fn file_digest(path: &Path) -> anyhow::Result<String> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(sha256_uri(&Sha256::digest(&bytes)))
}

/// `sha256:<hex>` of bytes.
pub fn digest(bytes: &[u8]) -> String {
    sha256_uri(&Sha256::digest(bytes))
}

/// The zone's virtual hardware as the VMM measures it into PCR 1, for a zone `zonectl run`
/// starts with these disks (the image's root file system first, when there is one).
pub fn platform_config(cpus: u32, memory: Size, disks: &[DiskSpec], tpm: bool) -> PlatformConfig {
    PlatformConfig {
        vcpus: cpus,
        memory_mib: memory.bytes() >> 20,
        disks_read_only: disks.iter().map(|disk| disk.read_only).collect(),
        vsock_cid: Some(GUEST_CID),
        rng: true,
        tpm: tpm.then(|| TPM_INTERFACE.to_string()),
    }
}

/// The host's account of what zone `zone_id` booted (`boot`, recorded when it started), for
/// its evidence bundles: the verifier checks it against what the VMM measured.
pub fn manifest(zone_id: &str, host_id: String, boot: &BootRecord) -> anyhow::Result<ZoneManifest> {
    Ok(ZoneManifest {
        zone_id: zone_id.to_string(),
        host_id,
        vmm_version: vmm_version(&boot.vmm)?,
        kernel_digest: file_digest(&boot.kernel)?,
        initrd_digest: Some(file_digest(&boot.initrd)?),
        cmdline_digest: digest(ZONE_CMDLINE.as_bytes()),
        image_manifest_digest: boot.image_manifest_digest.clone().unwrap_or_default(),
        oci_config_digest: boot.oci_config_digest.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_platform_config_rootfs_first_read_only() {
        let disks = [
            DiskSpec {
                path: "/root.ext4".into(),
                read_only: true,
            },
            DiskSpec {
                path: "/data.img".into(),
                read_only: false,
            },
        ];

        let config = platform_config(2, Size::from_mib(512), &disks, true);

        let text = String::from_utf8(config.canonical_bytes()).unwrap();
        assert!(
            text.contains("vcpus=2\nmemory_mib=512\ndisks=ro,rw\nvsock_cid=3\n"),
            "{text}"
        );
        assert!(text.ends_with("tpm=crb\n"), "{text}");
    }

    #[test]
    fn test_vmm_version_not_a_vmm_refused() {
        let err = vmm_version(Path::new("/bin/true")).unwrap_err().to_string();
        assert!(err.contains("is it zone-vmm"), "{err}");
    }
}
