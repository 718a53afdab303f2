//! How a workload finds the Workload API: `SPIFFE_ENDPOINT_SOCKET`, a `unix:///abs/path` URI
//! (SPIFFE_Workload_Endpoint.md §4), in the environment of every process the agent runs.

use std::path::Path;

use super::socket::SOCKET_NAME;

/// The variable SPIFFE client libraries read.
pub const ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// The endpoint URI of the socket in `dir` (an absolute path as the process sees it).
pub fn endpoint_uri(dir: &Path) -> String {
    format!("unix://{}", dir.join(SOCKET_NAME).display())
}

/// Adds `SPIFFE_ENDPOINT_SOCKET=endpoint` to `env` (`KEY=VALUE` entries) unless `env` sets
/// it already: the process's own wins.
pub fn add_endpoint_env(env: &mut Vec<String>, endpoint: &str) {
    let set = env.iter().any(|entry| {
        entry
            .split_once('=')
            .is_some_and(|(key, _)| key == ENDPOINT_ENV)
    });
    if !set {
        env.push(format!("{ENDPOINT_ENV}={endpoint}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_endpoint_uri_unix_scheme_absolute_path() {
        assert_eq!(
            endpoint_uri(Path::new("/run/spiffe")),
            "unix:///run/spiffe/workload.sock"
        );
    }

    #[test]
    fn test_add_endpoint_env_added_when_missing() {
        let mut env = vec!["PATH=/bin".to_string(), "SPIFFE_ENDPOINT=x".to_string()];

        add_endpoint_env(&mut env, "unix:///run/spiffe/workload.sock");

        assert_eq!(
            env,
            [
                "PATH=/bin",
                "SPIFFE_ENDPOINT=x",
                "SPIFFE_ENDPOINT_SOCKET=unix:///run/spiffe/workload.sock"
            ]
        );
    }

    #[test]
    fn test_add_endpoint_env_existing_value_not_overridden() {
        let mut env = vec!["SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/agent.sock".to_string()];

        add_endpoint_env(&mut env, "unix:///run/spiffe/workload.sock");

        assert_eq!(env, ["SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/agent.sock"]);
    }
}
