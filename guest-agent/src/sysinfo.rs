//! Facts about the zone reported in `AgentReady`.

use std::fs;

use zone_proto::agent::v1::AgentReady;

const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// Builds the `AgentReady` message for this zone.
pub fn agent_ready() -> AgentReady {
    let kernel_release = match nix::sys::utsname::uname() {
        Ok(uts) => uts.release().to_string_lossy().into_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "uname failed");
            String::new()
        }
    };
    let online_cpus = fs::read_to_string(ONLINE_CPUS)
        .ok()
        .and_then(|list| count_cpu_list(&list))
        .unwrap_or(0);
    AgentReady {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release,
        online_cpus,
    }
}

/// Counts the CPUs in a kernel CPU list such as `0-3,5\n`; `None` if it does not parse.
pub fn count_cpu_list(list: &str) -> Option<u32> {
    let list = list.trim();
    if list.is_empty() {
        return Some(0);
    }
    list.split(',').try_fold(0u32, |count, range| {
        let (first, last) = match range.split_once('-') {
            Some((first, last)) => (first.parse::<u32>().ok()?, last.parse::<u32>().ok()?),
            None => {
                let cpu = range.parse::<u32>().ok()?;
                (cpu, cpu)
            }
        };
        count.checked_add(last.checked_sub(first)?.checked_add(1)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_count_cpu_list_ranges_and_singles_counted() {
        assert_eq!(count_cpu_list("0\n"), Some(1));
        assert_eq!(count_cpu_list("0-3\n"), Some(4));
        assert_eq!(count_cpu_list("0-1,4,6-7"), Some(5));
        assert_eq!(count_cpu_list(""), Some(0));
    }

    #[test]
    fn test_count_cpu_list_malformed_none() {
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("a"), None);
        assert_eq!(count_cpu_list("0-"), None);
    }

    #[test]
    fn test_agent_ready_on_host_filled() {
        let ready = agent_ready();

        assert_eq!(ready.agent_version, env!("CARGO_PKG_VERSION"));
        assert!(!ready.kernel_release.is_empty());
        assert!(ready.online_cpus >= 1);
    }
}
