//! `zonectl ps [-a]`: a table of zones from their state directories.

use std::path::PathBuf;

use clap::Args;

use crate::zone_dir::DEFAULT_STATE_ROOT;
use crate::zone_state::{self, Status, ZoneState};

const COMMAND_WIDTH: usize = 30;

/// List zones: running ones (and those whose VMM died), or all with -a.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every zone, also those that ended.
    #[arg(short = 'a', long)]
    pub all: bool,

    /// Directory holding zones' state directories.
    #[arg(long, value_name = "DIR", env = "ZONES_STATE_ROOT", default_value = DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,
}

pub fn run(args: PsArgs) -> anyhow::Result<()> {
    let zones = zone_state::list(&args.state_root)?;
    let now = zone_state::now();
    let rows: Vec<[String; 6]> = zones
        .iter()
        .filter(|zone| args.all || shown_by_default(zone))
        .map(|zone| row(zone, &zone.status_text(), now))
        .collect();
    print!("{}", table(&rows));
    Ok(())
}

/// Zones that should be running, including those whose VMM died and need `rm`.
fn shown_by_default(zone: &ZoneState) -> bool {
    zone.is_active() || zone.status == Status::VmmDied
}

fn row(zone: &ZoneState, status: &str, now: u64) -> [String; 6] {
    let mut command = zone.command.join(" ");
    if command.chars().count() > COMMAND_WIDTH {
        command = command.chars().take(COMMAND_WIDTH - 3).collect::<String>() + "...";
    }
    [
        zone.id.clone(),
        zone.name.clone().unwrap_or_else(|| "-".to_string()),
        zone.image.clone(),
        format!("\"{command}\""),
        zone_state::ago(zone.created, now),
        status.to_string(),
    ]
}

fn table(rows: &[[String; 6]]) -> String {
    let header = ["ID", "NAME", "IMAGE", "COMMAND", "CREATED", "STATUS"].map(str::to_string);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(status: Status) -> ZoneState {
        ZoneState {
            rootfs_fstype: None,
            id: "abcdef012345".into(),
            name: Some("job".into()),
            image: "busybox".into(),
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            env: Vec::new(),
            created: 1000,
            supervisor_pid: None,
            vmm_pid: None,
            status,
            exit_code: Some(3),
            error: None,
            auto_remove: false,
            boot: None,
            network: None,
        }
    }

    #[test]
    fn test_row_long_command_truncated_and_quoted() {
        let row = row(&zone(Status::Exited), "exited (3)", 1005);

        assert_eq!(row[3], "\"sh -c echo out; echo err >&...\"");
        assert_eq!(row[4], "5 seconds ago");
        assert_eq!(row[5], "exited (3)");
    }

    #[test]
    fn test_table_columns_aligned() {
        let rows = [row(&zone(Status::Exited), "exited (3)", 1000)];

        let text = table(&rows);

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("NAME"), lines[1].find("job"));
        assert_eq!(lines[0].find("STATUS"), lines[1].find("exited (3)"));
    }

    #[test]
    fn test_shown_by_default_only_live_or_broken() {
        assert!(shown_by_default(&zone(Status::Running)));
        assert!(shown_by_default(&zone(Status::VmmDied)));
        assert!(!shown_by_default(&zone(Status::Exited)));
        assert!(!shown_by_default(&zone(Status::Stopped)));
    }
}
