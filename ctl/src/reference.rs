//! `zonectl reference [IMAGE] -o FILE`: the reference values a zone started by
//! `zonectl run` with the same image, kernel, initrd and hardware will measure, computed
//! without booting anything (zone-attest's measurement plan, the one the VMM follows).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use zone_attest::measurements::{BootInputs, ZoneClaims};
use zone_attest::reference::ReferenceValues;
use zone_image::Store;

use crate::boot_facts;
use crate::cli::{DiskSpec, RootfsSpec, ZoneShape};
use crate::run::{default_vmm, zone_disks};
use crate::size::Size;
use crate::vmm_process::ZONE_CMDLINE;

/// Compute the reference values of a zone without booting it.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  zonectl reference busybox --cpus 2 -o busybox.ref.json\n  \
                        zonectl run -d --cpus 2 --name web busybox sleep 1000"
)]
pub struct ReferenceArgs {
    /// The image the zone runs (from the store); omit it with --bare.
    #[arg(value_name = "IMAGE", required_unless_present = "bare")]
    pub image: Option<String>,
    /// The zone runs in its own userland (zonectl run --bare): no image.
    #[arg(long, conflicts_with = "image")]
    pub bare: bool,
    #[command(flatten)]
    pub shape: ZoneShape,
    /// The zone's Linux kernel (bzImage).
    #[arg(long, value_name = "PATH", env = "ZONES_KERNEL")]
    pub kernel: PathBuf,
    /// The zone's initrd.
    #[arg(long, value_name = "PATH", env = "ZONES_INITRD")]
    pub initrd: PathBuf,
    /// The VMM binary [default: zone-vmm next to zonectl, else on PATH].
    #[arg(long, value_name = "PATH")]
    pub vmm: Option<PathBuf>,
    /// The image store's directory.
    #[arg(long = "store", value_name = "DIR", env = "ZONES_IMAGE_STORE", default_value = zone_image::DEFAULT_STORE_ROOT)]
    pub store: PathBuf,
    /// Where to write the reference values (JSON).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
}

/// What a zone boots, as far as its measurements go.
#[derive(Debug, Clone, Copy)]
pub struct ZoneBoot<'a> {
    pub vmm: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cpus: u32,
    pub memory: Size,
    /// In attach order; their paths do not count, only whether each is read-only.
    pub disks: &'a [DiskSpec],
    /// The image claims; the zone id is ignored.
    pub claims: &'a ZoneClaims,
}

/// The reference values of a zone booting `boot` with a vTPM (the VMM's measurement plan).
pub fn compute(boot: &ZoneBoot<'_>) -> anyhow::Result<ReferenceValues> {
    let platform = boot_facts::platform_config(boot.cpus, boot.memory, boot.disks, true);
    let zone_config = platform.canonical_bytes();
    let kernel = fs::read(boot.kernel)
        .with_context(|| format!("reading the kernel {}", boot.kernel.display()))?;
    let initrd = fs::read(boot.initrd)
        .with_context(|| format!("reading the initrd {}", boot.initrd.display()))?;
    let vmm_version = boot_facts::vmm_version(boot.vmm)?;
    Ok(ReferenceValues::from_boot_inputs(&BootInputs {
        vmm_version: &vmm_version,
        zone_config: &zone_config,
        kernel: &kernel,
        cmdline: ZONE_CMDLINE.as_bytes(),
        initrd: Some(&initrd),
        claims: boot.claims,
    }))
}

pub fn run(args: ReferenceArgs) -> anyhow::Result<()> {
    let vmm = args.vmm.clone().unwrap_or_else(default_vmm);
    let mut claims = ZoneClaims::default();
    // The root file system disk is read-only and first; its path does not count.
    let rootfs = match &args.image {
        Some(image) => {
            let store = Store::open(&args.store)
                .with_context(|| format!("opening the image store {}", args.store.display()))?;
            let details = store.inspect(image).with_context(|| {
                format!("no image {image:?} in the store: import it with `zonectl image import`")
            })?;
            claims.image_manifest_digest = details.digest.to_string();
            claims.oci_config_digest = details.manifest.config.digest.to_string();
            Some(RootfsSpec {
                path: PathBuf::from("image"),
                fstype: "ext4".to_string(),
            })
        }
        None if args.bare => None,
        None => bail!("give an IMAGE, or --bare for a zone without one"),
    };
    let disks: Vec<DiskSpec> = zone_disks(rootfs.as_ref(), &args.shape.disks);
    let reference = compute(&ZoneBoot {
        vmm: &vmm,
        kernel: &args.kernel,
        initrd: &args.initrd,
        cpus: args.shape.cpus,
        memory: args.shape.memory,
        disks: &disks,
        claims: &claims,
    })?;
    let vmm_version = boot_facts::vmm_version(&vmm)?;
    fs::write(&args.output, reference.to_json())
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "reference values for {} ({} vCPUs, {}, {vmm_version}) written to {}",
        args.image.as_deref().unwrap_or("a bare zone"),
        args.shape.cpus,
        args.shape.memory,
        args.output.display()
    );
    Ok(())
}
