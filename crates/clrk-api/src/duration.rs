//! Go-style durations (`100s`, `1m30s`, `500ms`), as the guide's manifests write them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ManifestError;

/// Hint appended to every duration error a user sees in a manifest.
const EXAMPLES: &str = "like 100s, 1m30s or 500ms";

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_MINUTE: u128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MINUTE;

/// A non-negative duration written the way Go's `time.ParseDuration` reads it.
///
/// Parsing accepts a sequence of decimal numbers, each with an optional fraction and a
/// unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), or a bare `0`. Display and serialization
/// use Go's canonical form, so `100s` is written back as `1m40s`.
///
/// ```
/// use clrk_api::GoDuration;
/// let d: GoDuration = "1m30s".parse().unwrap();
/// assert_eq!(d.0.as_secs(), 90);
/// assert_eq!(d.to_string(), "1m30s");
/// assert!("-5s".parse::<GoDuration>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// A duration of whole seconds.
    ///
    /// ```
    /// assert_eq!(clrk_api::GoDuration::from_secs(100).to_string(), "1m40s");
    /// ```
    pub const fn from_secs(secs: u64) -> Self {
        GoDuration(Duration::from_secs(secs))
    }

    /// Whether the duration is zero, which no manifest field allows.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration(d)
    }
}

impl FromStr for GoDuration {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
            .map(GoDuration)
            .map_err(|reason| ManifestError::InvalidDuration {
                input: s.to_owned(),
                reason: reason.to_string(),
            })
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Empty,
    Negative,
    MissingNumber,
    MissingUnit,
    UnknownUnit,
    TooLarge,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Empty => "it is empty",
            Refusal::Negative => "must not be negative",
            Refusal::MissingNumber => "expected a number before each unit",
            Refusal::MissingUnit => "every number needs a unit (ns, us, ms, s, m or h)",
            Refusal::UnknownUnit => "unknown unit (use ns, us, ms, s, m or h)",
            Refusal::TooLarge => "too large",
        })
    }
}

impl Refusal {
    /// The explanation shown for a manifest field: durations in manifests must be positive.
    fn for_manifest(self) -> String {
        match self {
            Refusal::Negative => format!("must be positive, {EXAMPLES}"),
            other => format!("{other}, {EXAMPLES}"),
        }
    }
}

fn parse(s: &str) -> Result<Duration, Refusal> {
    let rest = match s.strip_prefix('-') {
        Some(_) => return Err(Refusal::Negative),
        None => s.strip_prefix('+').unwrap_or(s),
    };
    if rest.is_empty() {
        return Err(Refusal::Empty);
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = rest;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(Refusal::MissingUnit);
        }
        let scale = unit_nanos(unit).ok_or(Refusal::UnknownUnit)?;
        let nanos = scaled_decimal(number, scale).ok_or(Refusal::MissingNumber)?;
        total = total.checked_add(nanos).ok_or(Refusal::TooLarge)?;
        rest = after;
    }
    let nanos = u64::try_from(total).map_err(|_| Refusal::TooLarge)?;
    Ok(Duration::from_nanos(nanos))
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SECOND,
        "m" => NANOS_PER_MINUTE,
        "h" => NANOS_PER_HOUR,
        _ => return None,
    })
}

/// `number × scale` for a decimal like `1.5`, truncated as Go does; `None` if not a number.
fn scaled_decimal(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if fraction.contains('.') {
        return None;
    }
    let whole_value = if whole.is_empty() {
        0
    } else {
        whole.parse::<u128>().ok()?
    };
    // Digits past the 18th cannot change a nanosecond count; dropping them avoids overflow.
    let fraction = &fraction[..fraction.len().min(18)];
    let fraction_value = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u128>().ok()? * scale / 10u128.pow(fraction.len() as u32)
    };
    whole_value.checked_mul(scale)?.checked_add(fraction_value)
}

impl fmt::Display for GoDuration {
    /// Go's `time.Duration.String`: `1h2m3.5s`, `1m40s`, `500ms`, `1.5µs`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < NANOS_PER_MICRO {
            return write!(f, "{nanos}ns");
        }
        if nanos < NANOS_PER_MILLI {
            return write_decimal(f, nanos, NANOS_PER_MICRO, 3, "\u{b5}s");
        }
        if nanos < NANOS_PER_SECOND {
            return write_decimal(f, nanos, NANOS_PER_MILLI, 6, "ms");
        }
        let hours = nanos / NANOS_PER_HOUR;
        let minutes = nanos % NANOS_PER_HOUR / NANOS_PER_MINUTE;
        let seconds = nanos % NANOS_PER_MINUTE;
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if hours > 0 || minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write_decimal(f, seconds, NANOS_PER_SECOND, 9, "s")
    }
}

/// Writes `value / unit` with the fraction's trailing zeros dropped, then `suffix`.
fn write_decimal(
    f: &mut fmt::Formatter<'_>,
    value: u128,
    unit: u128,
    digits: usize,
    suffix: &str,
) -> fmt::Result {
    let whole = value / unit;
    let fraction = value % unit;
    if fraction == 0 {
        return write!(f, "{whole}{suffix}");
    }
    let fraction = format!("{fraction:0digits$}");
    write!(f, "{whole}.{}{suffix}", fraction.trim_end_matches('0'))
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl DurationVisitor {
    fn bare_number<E: de::Error>(n: impl fmt::Display) -> E {
        E::custom(format!(
            "\"{n}\" is not a valid duration: add a unit, {EXAMPLES}"
        ))
    }
}

impl Visitor<'_> for DurationVisitor {
    type Value = GoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a duration string {EXAMPLES}")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<GoDuration, E> {
        parse(s).map(GoDuration).map_err(|refusal| {
            E::custom(format!(
                "\"{s}\" is not a valid duration: {}",
                refusal.for_manifest()
            ))
        })
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<GoDuration, E> {
        Err(Self::bare_number(n))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<GoDuration, E> {
        Err(Self::bare_number(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<GoDuration, E> {
        Err(Self::bare_number(n))
    }
}

/// The message a manifest field gets when its duration is zero.
pub(crate) fn zero_message(d: GoDuration) -> String {
    format!(
        "\"{d}\" is not a valid duration: {}",
        Refusal::Negative.for_manifest()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse::<GoDuration>().unwrap().0
    }

    #[test]
    fn parses_go_forms() {
        assert_eq!(d("100s"), Duration::from_secs(100));
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("1h"), Duration::from_secs(3600));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("2h45m"), Duration::from_secs(2 * 3600 + 45 * 60));
        assert_eq!(d(".5s"), Duration::from_millis(500));
        assert_eq!(d("10us"), Duration::from_micros(10));
        assert_eq!(d("10µs"), Duration::from_micros(10));
        assert_eq!(d("7ns"), Duration::from_nanos(7));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("+3s"), Duration::from_secs(3));
    }

    #[test]
    fn refuses_bad_forms_with_reasons() {
        let err = "-5s".parse::<GoDuration>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"-5s\" is not a valid duration: must not be negative"
        );
        for bad in ["", "5", "s", "5x", "1.2.3s", "5 s", "1e3s", "100000000h"] {
            assert!(
                bad.parse::<GoDuration>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn displays_like_go() {
        let cases = [
            ("100s", "1m40s"),
            ("1m30s", "1m30s"),
            ("500ms", "500ms"),
            ("1h", "1h0m0s"),
            ("1.5s", "1.5s"),
            ("2h45m", "2h45m0s"),
            ("10m", "10m0s"),
            ("1.5us", "1.5µs"),
            ("3ns", "3ns"),
            ("0s", "0s"),
            ("1h0m0.25s", "1h0m0.25s"),
        ];
        for (input, shown) in cases {
            assert_eq!(input.parse::<GoDuration>().unwrap().to_string(), shown);
        }
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "100s",
            "1m30s",
            "500ms",
            "1h",
            "1.5s",
            "2h45m",
            "1.000000001s",
            "999us",
        ] {
            let parsed: GoDuration = input.parse().unwrap();
            let again: GoDuration = parsed.to_string().parse().unwrap();
            assert_eq!(parsed, again, "{input}");
        }
    }

    #[test]
    fn serializes_as_string() {
        let v = serde_json::to_value(GoDuration::from_secs(90)).unwrap();
        assert_eq!(v, serde_json::json!("1m30s"));
        let back: GoDuration = serde_json::from_value(v).unwrap();
        assert_eq!(back, GoDuration::from_secs(90));
    }

    #[test]
    fn bare_number_in_manifest_asks_for_unit() {
        let err = serde_json::from_value::<GoDuration>(serde_json::json!(60)).unwrap_err();
        assert!(err.to_string().contains("add a unit"), "{err}");
    }
}
