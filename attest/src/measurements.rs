//! The measurement plan: what the VMM extends into a zone's vTPM before the first vCPU runs,
//! as a pure function of the boot inputs. The VMM extends and logs exactly [`plan`]'s events,
//! and `zonectl reference` computes reference PCRs from the same function without booting, so
//! this module is the single source of truth for the layout below.
//!
//! | order | PCR | event type | digest of | event data |
//! |---|---|---|---|---|
//! | 1 | 0 | `EV_S_CRTM_VERSION` | the data | VMM version, UTF-8 (`"zone-vmm 0.1.0"`), no NUL |
//! | 2 | 1 | `EV_PLATFORM_CONFIG_FLAGS` | the data | canonical zone config ([`PlatformConfig::canonical_bytes`]) |
//! | 3-10 | 0..=7 | `EV_SEPARATOR` | the data | `00 00 00 00` |
//! | 11 | 4 | `EV_IPL` | the kernel image file, as given to the VMM | `"zone-kernel"` |
//! | 12 | 8 | `EV_IPL` | the data | the kernel command line, raw bytes, no NUL |
//! | 13 | 9 | `EV_EVENT_TAG` | the initrd file | `TCG_PCClientTaggedEvent{0x8F3B22EC, 13, "Linux initrd\0"}` |
//! | 14-16 | 15 | `EV_IPL` | the data | `"zone-id=…"`, `"image-manifest-digest=…"`, `"oci-config-digest=…"` |
//!
//! Notes on the choices:
//! - PCR 0-7 follow the PC Client shape: the platform (VMM) measures itself and its
//!   configuration, closes PCRs 0-7 with separators, and then measures the boot application
//!   into PCR 4, as UEFI does for the OS loader after `ReadyToBoot`.
//! - The command line is measured as the exact bytes the kernel reads (ASCII/UTF-8, without
//!   the terminating NUL), not UTF-16 as the Linux EFI stub's `LoadOptions` event in PCR 9.
//! - The initrd event is the one the Linux EFI stub writes (tag `0x8F3B22EC`, "Linux initrd"),
//!   so tools that know it recognise it. A zone without an initrd has no PCR 9 event.
//! - Zone claims go into PCR 15 ([`PCR_ZONE_CLAIMS`], whose docs say why that PCR and why the
//!   guest's access to it does no harm), extended at locality 0 like every other event. The
//!   three events are always there, with an empty value for an absent claim (a bare zone has
//!   no image), so the PCR always says which claims the zone was started with.
//! - Every event whose data is short carries its digest's preimage as data, so a verifier can
//!   check data against digest; the kernel and initrd are only named, their digests are
//!   compared with reference values.

use crate::eventlog::{
    sha256, Event, EventLog, PcrBank, EV_EVENT_TAG, EV_IPL, EV_PLATFORM_CONFIG_FLAGS, EV_SEPARATOR,
    EV_S_CRTM_VERSION,
};

/// PCR of the VMM's version.
pub const PCR_CRTM: u32 = 0;
/// PCR of the canonical zone configuration.
pub const PCR_PLATFORM_CONFIG: u32 = 1;
/// PCR of the kernel image.
pub const PCR_KERNEL: u32 = 4;
/// PCR of the kernel command line.
pub const PCR_CMDLINE: u32 = 8;
/// PCR of the initrd.
pub const PCR_INITRD: u32 = 9;
/// PCR of the zone claims (zone id, image manifest digest, OCI config digest).
///
/// Why 15: PCRs 0-15 start at zero after `TPM2_Startup`, so tools that replay an event log
/// from zero (`tpm2_eventlog`, Keylime, go-attestation) compute the value the TPM quotes. The
/// DRTM PCRs 17-22, which the guest could not extend from locality 0, start at all ones
/// instead, and those tools get them wrong. systemd uses PCR 15 for the system's identity
/// (machine-id), which is what these claims are for a zone.
///
/// Why the guest being able to extend it does no harm: the guest runs at locality 0 and can
/// extend PCR 15, but extension is one-way and the VMM extends the claims before the first
/// vCPU runs, so the guest can only append to the VMM's events, never replace or remove them.
/// The verifier requires PCR 15's part of the log to be exactly the plan's claim events
/// ([`crate::verify::Check::ZoneClaims`]) and the log to replay to the quoted value
/// ([`crate::verify::Check::EventLog`]), so an appended extend, logged or not, fails
/// verification: a guest can deny its own attestation, not forge claims.
pub const PCR_ZONE_CLAIMS: u32 = 15;
/// Tag of the Linux EFI stub's initrd event (`INITRD_EVENT_TAG_ID`).
pub const INITRD_EVENT_TAG: u32 = 0x8F3B_22EC;
/// Tagged-event data of the initrd event, NUL included, as the EFI stub writes it.
pub const INITRD_EVENT_DATA: &[u8] = b"Linux initrd\0";
/// Event data of the kernel event.
pub const KERNEL_EVENT_DATA: &[u8] = b"zone-kernel";
/// Keys of the claim events, in the order they are extended.
pub const CLAIM_KEYS: [&str; 3] = ["zone-id", "image-manifest-digest", "oci-config-digest"];

/// Facts about the zone the VMM asserts in PCR 15. Empty strings for absent claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneClaims {
    pub zone_id: String,
    /// `sha256:<hex>` of the container image's manifest; empty for a bare zone.
    pub image_manifest_digest: String,
    /// `sha256:<hex>` of the container image's OCI config; empty for a bare zone.
    pub oci_config_digest: String,
}

impl ZoneClaims {
    /// Sets the claim named `key` (one of [`CLAIM_KEYS`]); false for an unknown key.
    pub fn set(&mut self, key: &str, value: &str) -> bool {
        let slot = match key {
            "zone-id" => &mut self.zone_id,
            "image-manifest-digest" => &mut self.image_manifest_digest,
            "oci-config-digest" => &mut self.oci_config_digest,
            _ => return false,
        };
        *slot = value.to_string();
        true
    }

    /// `(key, value)` pairs in [`CLAIM_KEYS`] order.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (CLAIM_KEYS[0], self.zone_id.as_str()),
            (CLAIM_KEYS[1], self.image_manifest_digest.as_str()),
            (CLAIM_KEYS[2], self.oci_config_digest.as_str()),
        ]
    }
}

/// The zone's virtual hardware as measured into PCR 1. Host paths are left out on purpose:
/// they differ between hosts and say nothing about what the guest runs (disk contents are the
/// image's, named by the claims).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlatformConfig {
    pub vcpus: u32,
    pub memory_mib: u64,
    /// One entry per virtio-blk disk, in guest order: true if read-only.
    pub disks_read_only: Vec<bool>,
    /// The vsock device's guest CID, if the zone has one.
    pub vsock_cid: Option<u64>,
    /// The zone has the virtio entropy device.
    pub rng: bool,
    /// The TPM interface the guest sees (`"crb"`), if any.
    pub tpm: Option<String>,
}

impl PlatformConfig {
    /// Version line that starts the canonical form; bump it when the form changes.
    pub const FORMAT: &'static str = "zones-platform-config/1";

    /// The canonical form: UTF-8 lines `key=value\n` in a fixed order, starting with
    /// [`Self::FORMAT`]. Absent devices are written as `none`, so every key is always there.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let disks: Vec<&str> = self
            .disks_read_only
            .iter()
            .map(|ro| if *ro { "ro" } else { "rw" })
            .collect();
        let disks = if disks.is_empty() {
            "none".to_string()
        } else {
            disks.join(",")
        };
        let vsock = self
            .vsock_cid
            .map_or_else(|| "none".to_string(), |cid| cid.to_string());
        format!(
            "{}\nvcpus={}\nmemory_mib={}\ndisks={}\nvsock_cid={}\nrng={}\ntpm={}\n",
            Self::FORMAT,
            self.vcpus,
            self.memory_mib,
            disks,
            vsock,
            if self.rng { "virtio" } else { "none" },
            self.tpm.as_deref().unwrap_or("none"),
        )
        .into_bytes()
    }
}

/// Everything a zone's measurements depend on.
#[derive(Clone, Copy, Debug)]
pub struct BootInputs<'a> {
    /// What the VMM calls itself, e.g. `"zone-vmm 0.1.0"`.
    pub vmm_version: &'a str,
    /// [`PlatformConfig::canonical_bytes`].
    pub zone_config: &'a [u8],
    /// The kernel image file's bytes (bzImage or ELF, as given to the VMM).
    pub kernel: &'a [u8],
    /// The command line the kernel reads, without the NUL.
    pub cmdline: &'a [u8],
    /// The initrd file's bytes, if the zone has one.
    pub initrd: Option<&'a [u8]>,
    pub claims: &'a ZoneClaims,
}

/// The ordered measurements for a boot (see the module docs for the layout): the events to
/// extend and log, in order, all at locality 0.
pub fn plan(inputs: &BootInputs<'_>) -> Vec<Event> {
    let mut out = vec![
        Event::of_data(
            PCR_CRTM,
            EV_S_CRTM_VERSION,
            inputs.vmm_version.as_bytes().to_vec(),
        ),
        Event::of_data(
            PCR_PLATFORM_CONFIG,
            EV_PLATFORM_CONFIG_FLAGS,
            inputs.zone_config.to_vec(),
        ),
    ];
    for pcr in 0..=7 {
        out.push(Event::of_data(pcr, EV_SEPARATOR, vec![0; 4]));
    }
    out.push(Event {
        pcr: PCR_KERNEL,
        event_type: EV_IPL,
        digest: sha256(inputs.kernel),
        data: KERNEL_EVENT_DATA.to_vec(),
    });
    out.push(Event::of_data(PCR_CMDLINE, EV_IPL, inputs.cmdline.to_vec()));
    if let Some(initrd) = inputs.initrd {
        let mut data = INITRD_EVENT_TAG.to_le_bytes().to_vec();
        data.extend((INITRD_EVENT_DATA.len() as u32).to_le_bytes());
        data.extend(INITRD_EVENT_DATA);
        out.push(Event {
            pcr: PCR_INITRD,
            event_type: EV_EVENT_TAG,
            digest: sha256(initrd),
            data,
        });
    }
    for (key, value) in inputs.claims.pairs() {
        out.push(Event::of_data(
            PCR_ZONE_CLAIMS,
            EV_IPL,
            format!("{key}={value}").into_bytes(),
        ));
    }
    out
}

/// The event log of a plan.
pub fn event_log(plan: &[Event]) -> EventLog {
    EventLog {
        events: plan.to_vec(),
    }
}

/// The PCR values a TPM holds after `TPM2_Startup(CLEAR)` at locality 0 and `inputs`' plan.
pub fn reference_pcrs(inputs: &BootInputs<'_>) -> PcrBank {
    event_log(&plan(inputs)).replay()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::extend;

    fn claims() -> ZoneClaims {
        ZoneClaims {
            zone_id: "z1".into(),
            image_manifest_digest: "sha256:aa".into(),
            oci_config_digest: "sha256:bb".into(),
        }
    }

    fn inputs<'a>(claims: &'a ZoneClaims, initrd: Option<&'a [u8]>) -> BootInputs<'a> {
        BootInputs {
            vmm_version: "zone-vmm 0.1.0",
            zone_config: b"cfg",
            kernel: b"kernel",
            cmdline: b"console=ttyS0",
            initrd,
            claims,
        }
    }

    #[test]
    fn test_plan_layout_pcrs_and_types() {
        let c = claims();
        let p = plan(&inputs(&c, Some(b"initrd")));
        let shape: Vec<(u32, u32)> = p.iter().map(|e| (e.pcr, e.event_type)).collect();
        let mut want = vec![(0, EV_S_CRTM_VERSION), (1, EV_PLATFORM_CONFIG_FLAGS)];
        want.extend((0..=7).map(|pcr| (pcr, EV_SEPARATOR)));
        want.extend([
            (4, EV_IPL),
            (8, EV_IPL),
            (9, EV_EVENT_TAG),
            (15, EV_IPL),
            (15, EV_IPL),
            (15, EV_IPL),
        ]);
        assert_eq!(shape, want);
        assert_eq!(p[10].digest, sha256(b"kernel"));
        assert_eq!(p[11].data, b"console=ttyS0");
        assert_eq!(p[12].digest, sha256(b"initrd"));
        assert_eq!(
            p[12].data,
            b"\xec\x22\x3b\x8f\x0d\x00\x00\x00Linux initrd\x00"
        );
        assert_eq!(p[13].data, b"zone-id=z1");
        assert_eq!(p[15].data, b"oci-config-digest=sha256:bb");
    }

    #[test]
    fn test_plan_is_deterministic_and_input_sensitive() {
        let c = claims();
        let a = reference_pcrs(&inputs(&c, None));
        assert_eq!(a, reference_pcrs(&inputs(&c, None)));
        assert_eq!(a[9], [0; 32], "no initrd, no PCR 9 event");
        let other = ZoneClaims {
            zone_id: "z2".into(),
            ..c.clone()
        };
        let b = reference_pcrs(&inputs(&other, None));
        assert_ne!(a[15], b[15]);
        assert_eq!(a[..15], b[..15]);
        assert_eq!(a[16..], b[16..]);
        let bare = reference_pcrs(&inputs(&ZoneClaims::default(), None));
        // PCR 15 starts at zero, as tools that replay from zero assume.
        let mut want = [0; 32];
        for d in ["zone-id=", "image-manifest-digest=", "oci-config-digest="] {
            want = extend(&want, &sha256(d.as_bytes()));
        }
        assert_eq!(bare[15], want);
    }

    #[test]
    fn test_claims_set_known_keys_only() {
        let mut c = ZoneClaims::default();
        assert!(c.set("zone-id", "z"));
        assert!(c.set("oci-config-digest", "sha256:1"));
        assert!(!c.set("zone_id", "z"));
        assert_eq!(c.pairs()[0], ("zone-id", "z"));
    }

    #[test]
    fn test_platform_config_canonical_bytes_fixed_form() {
        let cfg = PlatformConfig {
            vcpus: 2,
            memory_mib: 512,
            disks_read_only: vec![true, false],
            vsock_cid: Some(3),
            rng: true,
            tpm: Some("crb".into()),
        };
        assert_eq!(
            String::from_utf8(cfg.canonical_bytes()).expect("utf-8"),
            "zones-platform-config/1\nvcpus=2\nmemory_mib=512\ndisks=ro,rw\nvsock_cid=3\nrng=virtio\ntpm=crb\n"
        );
        let empty = PlatformConfig::default().canonical_bytes();
        assert!(String::from_utf8(empty)
            .expect("utf-8")
            .contains("disks=none\nvsock_cid=none\nrng=none\ntpm=none\n"));
    }
}
