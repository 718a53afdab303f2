//! Host-wide routing for the bridge network: IPv4 forwarding and, where `nft` is installed,
//! one masquerade rule for the subnet in a table of our own (`table ip zones`), so zones reach
//! beyond the host. Without `nft` zones still reach the host (and published ports work, they
//! are a userspace proxy); the caller gets a note to print instead of an error.

use std::env;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ipam::Ipv4Subnet;

pub(super) const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The nftables table holding our rule; ours alone, so flushing its chain touches nothing else.
pub const NFT_TABLE: &str = "zones";

pub(super) fn enable_forwarding() -> io::Result<()> {
    if fs::read_to_string(IP_FORWARD)?.trim() == "1" {
        return Ok(());
    }
    fs::write(IP_FORWARD, "1")
}

/// Installs the masquerade rule if `nft` exists; returns a note for the operator otherwise.
pub(super) fn ensure_masquerade(bridge: &str, subnet: Ipv4Subnet) -> Option<String> {
    let Some(nft) = find_program("nft") else {
        return Some(no_nat_note(bridge, "nft not found"));
    };
    match run_nft(&nft, &masquerade_script(subnet)) {
        Ok(()) => None,
        Err(e) => {
            tracing::warn!(error = %e, "adding the masquerade rule with nft");
            Some(no_nat_note(bridge, &format!("nft failed: {e}")))
        }
    }
}

fn no_nat_note(bridge: &str, why: &str) -> String {
    format!("zones on {bridge} can reach this host but not beyond: {why}")
}

/// One nft transaction, so running it again leaves exactly one rule: declare the table and
/// chain (a no-op when they exist), flush the chain, add the rule.
pub(super) fn masquerade_script(subnet: Ipv4Subnet) -> String {
    format!(
        "table ip {NFT_TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority 100; policy accept;\n\
         \t}}\n\
         }}\n\
         flush chain ip {NFT_TABLE} postrouting\n\
         add rule ip {NFT_TABLE} postrouting ip saddr {subnet} ip daddr != {subnet} masquerade\n"
    )
}

fn run_nft(nft: &Path, script: &str) -> io::Result<()> {
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// `name` in `$PATH` or in the sbin folders (often missing from a user's `$PATH`).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_masquerade_script_one_rule_for_subnet() {
        let script = masquerade_script("10.213.0.0/16".parse().unwrap());
        assert!(script.contains("table ip zones {"));
        assert!(script.contains("flush chain ip zones postrouting\n"));
        assert_eq!(script.matches("masquerade").count(), 1);
        assert!(script.contains("ip saddr 10.213.0.0/16 ip daddr != 10.213.0.0/16 masquerade"));
    }

    #[test]
    fn test_no_nat_note_names_bridge_and_reason() {
        assert_eq!(
            no_nat_note("zones0", "nft not found"),
            "zones on zones0 can reach this host but not beyond: nft not found"
        );
    }

    #[test]
    fn test_find_program_missing_none() {
        assert_eq!(find_program("surely-no-such-program-zones"), None);
        assert!(find_program("sh").is_some());
    }
}
