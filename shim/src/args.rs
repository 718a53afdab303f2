//! The shim's command line, as containerd writes it (Go `flag` syntax, flags before the
//! action): `-namespace NS -address GRPC -publish-binary BIN -id ID [-bundle DIR] [-debug]
//! start|delete`. Without an action the binary is the shim daemon, started by `start` with
//! `-socket ADDRESS`. Unknown flags are ignored rather than refused: containerd versions add
//! flags, and a shim that refuses one breaks every container.

use thiserror::Error;

/// What containerd asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or find) the shim daemon for this task and print its address.
    Start,
    /// Clean up after a shim that is gone; print a `DeleteResponse`.
    Delete,
    /// Serve the task API (the daemon `start` spawns).
    Serve,
    /// Print the version.
    Version,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub namespace: String,
    /// containerd's gRPC address.
    pub address: String,
    pub publish_binary: String,
    pub id: String,
    pub bundle: String,
    pub debug: bool,
    /// The daemon's ttrpc socket (`unix:///...`), given by `start` to the daemon.
    pub socket: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("flag -{0} needs a value")]
    MissingValue(String),
    #[error("unknown action {0:?}: expected start or delete")]
    UnknownAction(String),
    #[error("-{0} is required")]
    Required(&'static str),
}

/// Flags that take no value (Go `flag` booleans).
const BOOLEAN_FLAGS: &[&str] = &["debug", "v", "version", "info"];

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Result<(Flags, Action), ArgsError> {
    let mut flags = Flags::default();
    let mut action = None;
    let mut version = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            if action.is_none() {
                action = Some(arg.clone());
            }
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        if BOOLEAN_FLAGS.contains(&name) {
            let on = inline.as_deref().is_none_or(|v| v != "false");
            match name {
                "debug" => flags.debug = on,
                _ => version |= on,
            }
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => iter
                .next()
                .cloned()
                .ok_or_else(|| ArgsError::MissingValue(name.to_string()))?,
        };
        match name {
            "namespace" => flags.namespace = value,
            "address" => flags.address = value,
            "publish-binary" => flags.publish_binary = value,
            "id" => flags.id = value,
            "bundle" => flags.bundle = value,
            "socket" => flags.socket = value,
            _ => {}
        }
    }
    if version {
        return Ok((flags, Action::Version));
    }
    let action = match action.as_deref() {
        None => Action::Serve,
        Some("start") => Action::Start,
        Some("delete") => Action::Delete,
        Some(other) => return Err(ArgsError::UnknownAction(other.to_string())),
    };
    if flags.namespace.is_empty() {
        return Err(ArgsError::Required("namespace"));
    }
    if flags.id.is_empty() {
        return Err(ArgsError::Required("id"));
    }
    if action == Action::Serve && flags.socket.is_empty() {
        return Err(ArgsError::Required("socket"));
    }
    Ok((flags, action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_parse_containerd_start_argv_start_action() {
        let argv = strings(&[
            "-namespace",
            "default",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "t1",
            "-debug",
            "start",
        ]);

        let (flags, action) = parse(&argv).unwrap();

        assert_eq!(action, Action::Start);
        assert_eq!(flags.namespace, "default");
        assert_eq!(flags.address, "/run/containerd/containerd.sock");
        assert_eq!(flags.id, "t1");
        assert!(flags.debug);
    }

    #[test]
    fn test_parse_delete_with_bundle_and_inline_values() {
        let argv = strings(&[
            "--namespace=k8s.io",
            "-id=c1",
            "-bundle",
            "/b",
            "-new-flag",
            "x",
            "delete",
        ]);

        let (flags, action) = parse(&argv).unwrap();

        assert_eq!(action, Action::Delete);
        assert_eq!(
            (flags.namespace.as_str(), flags.bundle.as_str()),
            ("k8s.io", "/b")
        );
    }

    #[test]
    fn test_parse_daemon_without_socket_refused() {
        let err = parse(&strings(&["-namespace", "n", "-id", "i"])).unwrap_err();
        assert_eq!(err, ArgsError::Required("socket"));
    }

    #[test]
    fn test_parse_unknown_action_refused() {
        let err = parse(&strings(&["-namespace", "n", "-id", "i", "pause"])).unwrap_err();
        assert_eq!(err, ArgsError::UnknownAction("pause".into()));
    }

    #[test]
    fn test_parse_version_flag_no_other_flags_needed() {
        assert_eq!(parse(&strings(&["-v"])).unwrap().1, Action::Version);
    }
}
