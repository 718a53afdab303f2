//! This host's id, as zone certificates and evidence name it.

use std::fs;

/// This host's id in zone certificates: $ZONES_HOST_ID, else /etc/machine-id, else the
/// hostname.
pub fn host_id() -> anyhow::Result<String> {
    let candidates = [
        std::env::var("ZONES_HOST_ID").ok(),
        fs::read_to_string("/etc/machine-id").ok(),
        nix::unistd::gethostname()
            .ok()
            .map(|name| name.to_string_lossy().into_owned()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|id| id.trim().to_string())
        .find(|id| is_host_id(id))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "this host has no usable id for zone certificates (no /etc/machine-id, and the \
                 hostname is not 1-128 of [A-Za-z0-9._-]): set ZONES_HOST_ID"
            )
        })
}

fn is_host_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_is_host_id_refuses_unset_hostname() {
        assert!(is_host_id("0123abcd"));
        assert!(!is_host_id("(none)"));
        assert!(!is_host_id(""));
    }
}
