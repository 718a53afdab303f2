//! `zonectl image <verb>`: the local OCI image store (`zone-image`). One file per verb.

mod import;
mod inspect;
mod ls;
mod rm;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use zone_image::{Store, DEFAULT_STORE_ROOT};

/// Manage the local image store.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The image store's directory.
    #[arg(long = "store", value_name = "DIR", env = "ZONES_IMAGE_STORE", default_value = DEFAULT_STORE_ROOT, global = true)]
    pub store: PathBuf,

    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    Import(import::ImportArgs),
    Ls(ls::LsArgs),
    Inspect(inspect::InspectArgs),
    Rm(rm::RmArgs),
}

/// Runs an `image` verb.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.store).with_context(|| {
        format!(
            "cannot open the image store at {} (run as root, or pass --store DIR / set ZONES_IMAGE_STORE)",
            args.store.display()
        )
    })?;
    match args.command {
        ImageCommand::Import(a) => import::run(&store, a),
        ImageCommand::Ls(a) => ls::run(&store, a),
        ImageCommand::Inspect(a) => inspect::run(&store, a),
        ImageCommand::Rm(a) => rm::run(&store, a),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> ImageArgs {
        let argv = ["zonectl", "image"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Image(image) => image,
            _ => panic!("parsed as another verb"),
        }
    }

    #[test]
    fn test_cli_image_import_name_and_store_parsed() {
        let args = parse(&["import", "/x.tar", "--name", "a:b", "--store", "/s"]);

        assert_eq!(args.store, PathBuf::from("/s"));
        match args.command {
            ImageCommand::Import(i) => {
                assert_eq!(i.path, PathBuf::from("/x.tar"));
                assert_eq!(i.name.as_deref(), Some("a:b"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_cli_image_verbs_parsed() {
        assert!(matches!(parse(&["ls"]).command, ImageCommand::Ls(_)));
        assert!(matches!(
            parse(&["inspect", "busybox"]).command,
            ImageCommand::Inspect(_)
        ));
        assert!(matches!(
            parse(&["rm", "busybox"]).command,
            ImageCommand::Rm(_)
        ));
    }
}
