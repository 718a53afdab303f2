//! What `zonectl run` runs: the command, its environment and root file system, from an OCI
//! image in the local store (`run IMAGE [CMD...]`), a root file system image (`--rootfs`), or
//! the zone's own userland (`--bare`). Flags override what the image's config says, as with
//! `docker run`.

use std::path::Path;

use anyhow::{bail, Context};
use zone_image::{rootfs, Store};

use crate::cli::{RootfsSpec, RunArgs};

/// The process to start in the zone and where its root file system comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub rootfs: Option<RootfsSpec>,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    /// The image's manifest and config digests (`sha256:...`), measured into the zone's vTPM.
    pub image: Option<ImageDigests>,
}

/// What names an image exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigests {
    pub manifest: String,
    pub config: String,
}

/// Resolves `args` into a workload, building (or reusing) the image's root file system.
pub fn resolve(args: &RunArgs) -> anyhow::Result<Workload> {
    if args.bare || args.rootfs.is_some() {
        if args.args.is_empty() {
            bail!("no command given: zonectl run --bare CMD... (or --rootfs PATH CMD...)");
        }
        return Ok(Workload {
            rootfs: args.rootfs.clone(),
            command: args.args.clone(),
            env: args.env.clone(),
            cwd: args.workdir.clone().unwrap_or_default(),
            user: args.user.clone().unwrap_or_default(),
            image: None,
        });
    }
    let Some((image, command)) = args.args.split_first() else {
        bail!(
            "no image given: zonectl run IMAGE [CMD...] (see `zonectl image ls`), or \
             zonectl run --bare CMD... for the zone's own userland"
        );
    };
    from_image(&args.store, image, command, args)
}

fn from_image(
    store_root: &Path,
    image: &str,
    command: &[String],
    args: &RunArgs,
) -> anyhow::Result<Workload> {
    let store = Store::open(store_root).with_context(|| {
        format!(
            "cannot open the image store at {} (pass --store DIR or set ZONES_IMAGE_STORE)",
            store_root.display()
        )
    })?;
    let details = store.inspect(image).with_context(|| {
        format!("no image {image:?} in the store: import it with `zonectl image import PATH`")
    })?;
    let digests = ImageDigests {
        manifest: details.digest.to_string(),
        config: details.manifest.config.digest.to_string(),
    };
    let config = details.config;
    // CMD replaces the image's Cmd; the Entrypoint stays in front of either.
    let tail = if command.is_empty() {
        &config.cmd
    } else {
        command
    };
    let full: Vec<String> = config.entrypoint.iter().chain(tail).cloned().collect();
    if full.is_empty() {
        bail!("image {image:?} has no Entrypoint or Cmd: give a command after the image name");
    }
    let path = rootfs::build(&store, image)
        .with_context(|| format!("cannot build the root file system of {image:?}"))?;
    Ok(Workload {
        rootfs: Some(RootfsSpec {
            path,
            fstype: "ext4".to_string(),
        }),
        command: full,
        // The agent applies entries in order, so flags given later win over the image's.
        env: config.env.iter().chain(&args.env).cloned().collect(),
        cwd: args.workdir.clone().unwrap_or(config.working_dir),
        user: args.user.clone().unwrap_or(config.user),
        image: Some(digests),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run_args(argv: &[&str]) -> RunArgs {
        let full = ["zonectl", "run", "--kernel", "/k", "--initrd", "/i"]
            .iter()
            .chain(argv);
        match crate::cli::Cli::parse_from(full).command {
            crate::cli::Command::Run(args) => args,
            _ => panic!("parsed as another verb"),
        }
    }

    #[test]
    fn test_resolve_bare_takes_all_arguments_as_command() {
        let w = resolve(&run_args(&["--bare", "-u", "nobody", "uname", "-a"])).expect("bare");
        assert_eq!(w.command, ["uname", "-a"]);
        assert_eq!((w.rootfs, w.user.as_str()), (None, "nobody"));
    }

    #[test]
    fn test_resolve_nothing_given_names_what_is_missing() {
        let err = resolve(&run_args(&[])).expect_err("no image");
        assert!(err.to_string().contains("no image given"), "{err}");
        let err = resolve(&run_args(&["--bare"])).expect_err("no command");
        assert!(err.to_string().contains("no command given"), "{err}");
    }

    #[test]
    fn test_resolve_unknown_image_says_how_to_import() {
        let store = tempfile::tempdir().expect("tempdir");
        let store_arg = store.path().to_str().expect("utf-8");
        let err = resolve(&run_args(&["--store", store_arg, "nosuchimage", "true"]))
            .expect_err("unknown image");
        assert!(
            format!("{err:#}").contains("zonectl image import"),
            "{err:#}"
        );
    }
}
