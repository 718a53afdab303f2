//! `zonectl reference [IMAGE] -o FILE`: the reference values a zone started by
//! `zonectl run` with the same image, kernel, initrd and hardware will measure, computed
//! without booting anything (zone-attest's measurement plan, the one the VMM follows).

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context};
use zone_attest::measurements::{BootInputs, ZoneClaims};
use zone_attest::reference::ReferenceValues;
use zone_image::Store;

use crate::boot_facts;
use crate::cli::{DiskSpec, RootfsSpec, ZoneShape};
use crate::run::{default_vmm, zone_disks};
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
    let platform = boot_facts::platform_config(args.shape.cpus, args.shape.memory, &disks, true);
    let zone_config = platform.canonical_bytes();
    let kernel = fs::read(&args.kernel)
        .with_context(|| format!("reading the kernel {}", args.kernel.display()))?;
    let initrd = fs::read(&args.initrd)
        .with_context(|| format!("reading the initrd {}", args.initrd.display()))?;
    let vmm_version = boot_facts::vmm_version(&vmm)?;
    let inputs = BootInputs {
        vmm_version: &vmm_version,
        zone_config: &zone_config,
        kernel: &kernel,
        cmdline: ZONE_CMDLINE.as_bytes(),
        initrd: Some(&initrd),
        claims: &claims,
    };
    let reference = ReferenceValues::from_boot_inputs(&inputs);
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
