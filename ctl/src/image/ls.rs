//! `zonectl image ls`.

use clap::Args;
use zone_image::{ImageSummary, Store};

/// List the images in the store.
#[derive(Debug, Args)]
pub struct LsArgs {}

pub fn run(store: &Store, _args: LsArgs) -> anyhow::Result<()> {
    print!("{}", table(&store.list()?));
    Ok(())
}

/// The NAME, DIGEST, SIZE, CREATED table.
fn table(images: &[ImageSummary]) -> String {
    let rows: Vec<[String; 4]> = images
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.digest.short().to_string(),
                human_size(i.size),
                i.created.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["NAME", "DIGEST", "SIZE", "CREATED"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_table_rows_aligned() {
        let images = [ImageSummary {
            name: "busybox:latest".into(),
            digest: zone_image::Digest::of_bytes(b"m"),
            size: 1_100_000,
            created: Some("2024-01-01T00:00:00Z".into()),
        }];

        let text = table(&images);

        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME            DIGEST"), "{text}");
        assert!(lines[1].contains("1.0 MiB"), "{text}");
        assert_eq!(
            lines[0].find("DIGEST"),
            lines[1].find(images[0].digest.short())
        );
    }

    #[test]
    fn test_human_size_units_chosen() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(2048), "2.0 KiB");
    }
}
