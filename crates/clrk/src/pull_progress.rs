//! Image pulls during `clrk apply`: a progress bar per layer on a terminal, and one summary
//! line per image when done (the only output off a terminal).

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use clrk_wire::PullProgress;

/// One image's layers as reported so far.
#[derive(Debug, Default)]
struct ImagePull {
    started: Option<Instant>,
    /// Layer digest → (bytes done, bytes total, cached).
    layers: BTreeMap<String, (u64, u64, bool)>,
    bars: BTreeMap<String, ProgressBar>,
}

/// Draws pulls as the server reports them.
pub struct PullDisplay {
    bars: Option<MultiProgress>,
    images: BTreeMap<String, ImagePull>,
}

impl PullDisplay {
    /// Bars on stderr when it is a terminal; otherwise only the summaries.
    pub fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        PullDisplay {
            bars,
            images: BTreeMap::new(),
        }
    }

    /// Takes one progress report.
    pub fn update(&mut self, p: &PullProgress) {
        let image = self.images.entry(p.image.clone()).or_default();
        image.started.get_or_insert_with(Instant::now);
        image
            .layers
            .insert(p.layer.clone(), (p.done, p.total, p.cached));
        let Some(multi) = &self.bars else { return };
        let bar = image.bars.entry(p.layer.clone()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(p.total));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} {msg:>8} [{bar:30}] {decimal_bytes:>9}/{decimal_total_bytes:<9} {decimal_bytes_per_sec}",
                )
                .expect("valid progress template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{} {}", p.image, short_digest(&p.layer)));
            bar
        });
        bar.set_length(p.total);
        bar.set_position(p.done);
        if p.cached {
            bar.finish_with_message("cached");
        } else if p.done >= p.total {
            bar.finish_with_message("done");
        } else {
            bar.set_message("pulling");
        }
    }

    /// Clears the bars and returns one line per image the server reported, e.g.
    /// `pulled registry/agent:1: 3 layers, 52.4 MB in 1.2 s (1 cached)`.
    pub fn finish(self) -> Vec<String> {
        if let Some(multi) = &self.bars {
            let _ = multi.clear();
        }
        self.images
            .iter()
            .map(|(name, pull)| summary(name, pull))
            .collect()
    }
}

impl Default for PullDisplay {
    fn default() -> Self {
        Self::new()
    }
}

fn summary(name: &str, pull: &ImagePull) -> String {
    let cached = pull.layers.values().filter(|(_, _, c)| *c).count();
    let fetched: u64 = pull
        .layers
        .values()
        .filter(|(_, _, c)| !*c)
        .map(|(done, _, _)| done)
        .sum();
    let elapsed = pull.started.map(|s| s.elapsed()).unwrap_or_default();
    let layers = pull.layers.len();
    let mut line = format!(
        "pulled {name}: {layers} layer{}, {} in {}",
        if layers == 1 { "" } else { "s" },
        human_bytes(fetched),
        human_duration(elapsed)
    );
    if cached > 0 {
        line.push_str(&format!(" ({cached} cached)"));
    }
    line
}

/// `sha256:0123456789ab…` → `0123456789ab`.
fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    &hex[..hex.len().min(12)]
}

/// Bytes in decimal units, as registries and docker show image sizes.
///
/// ```
/// assert_eq!(clrk::pull_progress::human_bytes(999), "999 B");
/// assert_eq!(clrk::pull_progress::human_bytes(52_400_000), "52.4 MB");
/// ```
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(layer: &str, done: u64, total: u64, cached: bool) -> PullProgress {
        PullProgress {
            image: "reg/agent:1".into(),
            layer: layer.into(),
            done,
            total,
            cached,
        }
    }

    #[test]
    fn summary_counts_fetched_bytes_and_cached_layers() {
        let mut display = PullDisplay {
            bars: None,
            images: BTreeMap::new(),
        };
        display.update(&report("sha256:aa", 500, 2_000_000, false));
        display.update(&report("sha256:aa", 2_000_000, 2_000_000, false));
        display.update(&report("sha256:bb", 300, 300, true));
        let lines = display.finish();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("pulled reg/agent:1: 2 layers, 2.0 MB in ")
                && lines[0].ends_with(" (1 cached)"),
            "{lines:?}"
        );
    }

    #[test]
    fn digests_are_shortened_for_bars() {
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
    }
}
