//! `zonectl image inspect NAME`.

use clap::Args;
use zone_image::Store;

/// Show an image's manifest and config as JSON.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image name (`busybox` means `busybox:latest`) or manifest digest prefix.
    #[arg(value_name = "NAME")]
    pub image: String,
}

pub fn run(store: &Store, args: InspectArgs) -> anyhow::Result<()> {
    let details = store.inspect(&args.image)?;
    println!("{}", serde_json::to_string_pretty(&details)?);
    Ok(())
}
