//! The zone's resolv.conf (resolv.conf(5)): one `nameserver` line per server, then `search`
//! and `options` lines when there are any. Written once, when the network is configured, to
//! a file containers get as their read-only /etc/resolv.conf.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::config::DnsConfig;

/// The text of a resolv.conf for `dns`. Its values are checked ([`super::config`]): no
/// whitespace or newline can add a line of its own.
pub fn render(dns: &DnsConfig) -> String {
    let mut text = String::from("# Written by zone-agent from the host's ConfigureNetwork.\n");
    for server in &dns.nameservers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    text
}

/// Writes `text` to `path` (mode 0644) through a temporary file in the same directory and a
/// rename, so no reader ever sees half of it; creates the directory when missing.
pub fn write(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temporary)?;
    // The umask may have narrowed the mode: every container user must read it.
    file.set_permissions(fs::Permissions::from_mode(0o644))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(nameservers: &[&str], searches: &[&str], options: &[&str]) -> DnsConfig {
        DnsConfig {
            nameservers: nameservers.iter().map(|s| s.parse().unwrap()).collect(),
            searches: searches.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn test_render_all_lines_in_order() {
        let text = render(&dns(
            &["10.96.0.10", "fd00::a"],
            &["default.svc.cluster.local", "svc.cluster.local"],
            &["ndots:5", "edns0"],
        ));

        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "nameserver 10.96.0.10",
                "nameserver fd00::a",
                "search default.svc.cluster.local svc.cluster.local",
                "options ndots:5 edns0",
            ]
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn test_render_nameserver_only_no_search_or_options_line() {
        let text = render(&dns(&["1.1.1.1"], &[], &[]));

        assert!(text.contains("nameserver 1.1.1.1\n"));
        assert!(!text.contains("search"), "{text}");
        assert!(!text.contains("options"), "{text}");
    }

    #[test]
    fn test_write_creates_dir_replaces_file_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/zone/resolv.conf");

        write(&path, "nameserver 10.0.0.1\n").unwrap();
        write(&path, "nameserver 10.0.0.2\n").unwrap();

        assert_eq!(fs::read_to_string(&path).unwrap(), "nameserver 10.0.0.2\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }
}
