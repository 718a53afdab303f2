//! `zonectl image import PATH [--name N]`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use zone_image::Store;

/// Import an image from an OCI layout directory, an OCI archive or a `docker save` archive.
///
/// Every blob is verified and every layer checked; a bad image leaves the store unchanged.
#[derive(Debug, Args)]
#[command(
    after_help = "Example: images/test-images/build-busybox /tmp/bb && zonectl image import /tmp/bb"
)]
pub struct ImportArgs {
    /// The OCI layout directory or archive (.tar, optionally gzip/zstd compressed).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Name to store the image under [default: the name the image carries].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

pub fn run(store: &Store, args: ImportArgs) -> anyhow::Result<()> {
    let image = store
        .import(&args.path, args.name.as_deref())
        .with_context(|| format!("{} was not imported", args.path.display()))?;
    println!("{} {}", image.name, image.digest);
    Ok(())
}
