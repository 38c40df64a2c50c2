//! Go-style durations as the CLI shows and checks them (`1m30s`, `500ms`).

use clrk_api::GoDuration;

/// Checks that `raw` is a positive Go-style duration such as `30s`, `1m30s` or `500ms`.
///
/// The server does the real interpretation; checking here (with the same parser,
/// [`clrk_api::GoDuration`]) lets a typo fail before any request.
///
/// ```
/// assert!(clrk::duration::validate("1m30s").is_ok());
/// assert!(clrk::duration::validate("30").is_err());
/// ```
pub fn validate(raw: &str) -> Result<(), String> {
    match raw.parse::<GoDuration>() {
        Err(_) => Err(format!(
            "'{raw}' is not a duration: write it like 30s, 1m30s or 500ms"
        )),
        Ok(duration) if duration.is_zero() => Err(format!(
            "'{raw}' is not a positive duration: use at least 1ms"
        )),
        Ok(_) => Ok(()),
    }
}

/// Formats milliseconds compactly: `350ms`, `1.2s`, `2m3s`, `1h2m`.
///
/// ```
/// assert_eq!(clrk::duration::format_millis(1_200), "1.2s");
/// ```
pub fn format_millis(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => {
            let tenths = ms / 100;
            if tenths.is_multiple_of(10) {
                format!("{}s", tenths / 10)
            } else {
                format!("{}.{}s", tenths / 10, tenths % 10)
            }
        }
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, ms % 60_000 / 1_000),
        _ => format!("{}h{}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// Formats an age in seconds the way `kubectl` does: `45s`, `3m`, `5h`, `2d`.
///
/// ```
/// assert_eq!(clrk::duration::format_age(125), "2m");
/// ```
pub fn format_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_durations() {
        for ok in ["30s", "1m30s", "500ms", "1.5h", "2h45m10s", "10us", "3µs"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", "30", "s", "1x", "1m30", "-5s", "1 s", "0s", "0m0s"] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn millis_read_naturally() {
        assert_eq!(format_millis(0), "0ms");
        assert_eq!(format_millis(999), "999ms");
        assert_eq!(format_millis(1_000), "1s");
        assert_eq!(format_millis(1_250), "1.2s");
        assert_eq!(format_millis(123_000), "2m3s");
        assert_eq!(format_millis(3_720_000), "1h2m");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(format_age(-3), "0s");
        assert_eq!(format_age(45), "45s");
        assert_eq!(format_age(119), "119s");
        assert_eq!(format_age(600), "10m");
        assert_eq!(format_age(7_200), "2h");
        assert_eq!(format_age(3 * 86_400), "3d");
    }
}
