//! Label values a client, an agent or an upstream chooses, bounded: a family's series must
//! not grow with what they send.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The value that stands for every value beyond a bound.
pub const OTHER: &str = "other";

/// Longest label value kept as it is.
const MAX_LEN: usize = 64;

/// The first `most` distinct values seen are labels as they are; later ones, and any value
/// too long or with characters outside printable ASCII, are [`OTHER`].
///
/// ```
/// let models = clrk_metrics::BoundedValues::new(1);
/// assert_eq!(models.label("claude-test"), "claude-test");
/// assert_eq!(models.label("gpt-test"), "other");
/// assert_eq!(models.label("claude-test"), "claude-test");
/// ```
pub struct BoundedValues {
    most: usize,
    seen: Mutex<BTreeSet<String>>,
}

impl BoundedValues {
    pub const fn new(most: usize) -> BoundedValues {
        BoundedValues {
            most,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// `value` as a label, or [`OTHER`].
    pub fn label(&self, value: &str) -> String {
        let printable = value.bytes().all(|b| b.is_ascii_graphic());
        if value.is_empty() || value.len() > MAX_LEN || !printable {
            return OTHER.to_owned();
        }
        let mut seen = self.seen.lock().expect("bounded label values");
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.most {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        OTHER.to_owned()
    }
}

/// An execution's trigger as a label: clrk's own (`http`, `cron`, `cli`), else [`OTHER`] (a
/// caller's `X-Clrk-Trigger` is any text).
///
/// ```
/// assert_eq!(clrk_metrics::trigger("cron"), "cron");
/// assert_eq!(clrk_metrics::trigger("nightly-report-42"), "other");
/// ```
pub fn trigger(value: &str) -> &'static str {
    match value {
        "http" => "http",
        "cron" => "cron",
        "cli" => "cli",
        _ => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_beyond_the_bound_too_long_or_unprintable_are_other() {
        let values = BoundedValues::new(2);
        assert_eq!(values.label("a"), "a");
        assert_eq!(values.label("b"), "b");
        assert_eq!(values.label("c"), OTHER);
        assert_eq!(values.label("a"), "a");
        assert_eq!(values.label(&"x".repeat(65)), OTHER);
        assert_eq!(values.label("line\nbreak"), OTHER);
        assert_eq!(values.label(""), OTHER);
        assert_eq!(values.seen.lock().unwrap().len(), 2);
    }
}
