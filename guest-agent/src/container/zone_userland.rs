//! A process without a container: in the zone's own busybox userland, beside the agent
//! (`zonectl run --bare`, for looking at the zone itself). It gets a directory, a user and an
//! environment; the isolation settings of a container (rlimits, capabilities, no new
//! privileges) are refused rather than silently ignored.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::SigSet;
use nix::unistd::{chdir, setgid, setgroups, setuid, Gid, Uid};

use super::config::{ConfigError, ProcessConfig};
use super::instance::{identity_in, ContainerError};
use super::spec::SpecError;
use super::ZONE_PATH;

/// Builds the command for `process` in the zone's own root, as its user, in its directory.
pub fn zone_command(process: &ProcessConfig) -> Result<Command, ContainerError> {
    process.check()?;
    let refused = [
        (!process.rlimits.is_empty(), "rlimits"),
        (process.capabilities.is_some(), "capabilities"),
        (process.no_new_privileges, "no_new_privileges"),
    ];
    if let Some((_, field)) = refused.iter().find(|(set, _)| *set) {
        return Err(ContainerError::Config(ConfigError::Unsupported(format!(
            "{field} apply to containers; a process in the zone's own userland takes none"
        ))));
    }
    let cwd = if process.cwd.is_empty() {
        "/"
    } else {
        &process.cwd
    };
    if !Path::new(cwd).is_dir() {
        return Err(ContainerError::CwdNotDirectory(cwd.to_string()));
    }
    let identity = match process.user.as_str() {
        "" => None,
        user => Some(identity_in(Path::new("/"), user)?),
    };
    let mut command = Command::new(&process.args[0]);
    command
        .args(&process.args[1..])
        .env_clear()
        .env("PATH", ZONE_PATH);
    if let Some(identity) = &identity {
        command.env("HOME", &identity.home);
    }
    if process.terminal {
        command.env("TERM", "xterm");
    }
    for entry in &process.env {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    let cwd = CString::new(cwd).map_err(|_| ConfigError::from(SpecError::Cwd(cwd.to_string())))?;
    let ids = identity.map(|identity| {
        let mut groups: Vec<Gid> = identity.groups.iter().copied().map(Gid::from_raw).collect();
        groups.extend(process.additional_gids.iter().copied().map(Gid::from_raw));
        (
            Uid::from_raw(identity.uid),
            Gid::from_raw(identity.gid),
            groups,
        )
    });
    let child_steps = move || -> io::Result<()> {
        SigSet::empty().thread_set_mask()?;
        chdir(cwd.as_c_str())?;
        if let Some((uid, gid, groups)) = &ids {
            setgroups(groups)?;
            setgid(*gid)?;
            setuid(*uid)?;
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec. It only makes the
    // sigprocmask(2), chdir(2), setgroups(2), setgid(2) and setuid(2) system calls, which are
    // async-signal-safe, on a C string and a group list built in the parent: it neither
    // allocates nor takes locks.
    unsafe {
        command.pre_exec(child_steps);
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(process: &ProcessConfig) -> String {
        match zone_command(process) {
            Ok(_) => panic!("{process:?} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn test_zone_command_runs_with_zone_path_and_env() {
        let mut process = ProcessConfig::new(&["sh", "-c", "echo \"$PATH $GREETING\"; pwd"]);
        process.env = vec!["GREETING=hi".into()];
        process.cwd = "/tmp".into();

        let out = zone_command(&process).unwrap().output().unwrap();

        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{ZONE_PATH} hi\n/tmp\n")
        );
    }

    #[test]
    fn test_zone_command_bad_values_named() {
        let mut process = ProcessConfig::new(&["true"]);
        process.cwd = "/no/such/dir".into();
        assert!(
            error_of(&process).contains("/no/such/dir"),
            "{}",
            error_of(&process)
        );

        let mut process = ProcessConfig::new(&["true"]);
        process.user = "no-such-user-anywhere".into();
        assert!(
            error_of(&process).contains("not found"),
            "{}",
            error_of(&process)
        );

        let mut process = ProcessConfig::new(&["true"]);
        process.no_new_privileges = true;
        assert!(
            error_of(&process).contains("no_new_privileges"),
            "{}",
            error_of(&process)
        );
    }
}
