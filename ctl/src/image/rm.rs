//! `zonectl image rm NAME`.

use clap::Args;
use zone_image::Store;

/// Remove an image name and delete the blobs no other image needs.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Image name (`busybox` means `busybox:latest`) or manifest digest prefix.
    #[arg(value_name = "NAME")]
    pub image: String,
}

pub fn run(store: &Store, args: RmArgs) -> anyhow::Result<()> {
    let image = store.resolve(&args.image)?;
    let deleted = store.remove(&image.name)?;
    println!("removed {} ({deleted} blobs deleted)", image.name);
    Ok(())
}
