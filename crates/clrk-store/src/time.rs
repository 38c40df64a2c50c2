//! Timestamps are stored as integer milliseconds since the Unix epoch, in both backends.

use chrono::{DateTime, Utc};

/// Milliseconds since the epoch; sub-millisecond precision is dropped.
pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The time `millis` after the epoch; `None` when out of chrono's range.
pub(crate) fn from_millis(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

/// Now, truncated to what the store keeps, so values read back equal values written.
pub(crate) fn now() -> DateTime<Utc> {
    let millis = to_millis(Utc::now());
    DateTime::from_timestamp_millis(millis).unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_drops_sub_millisecond_precision() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:20:30.123456Z")
            .unwrap()
            .to_utc();
        let back = from_millis(to_millis(t)).unwrap();
        assert_eq!(back.to_rfc3339(), "2024-05-01T10:20:30.123+00:00");
    }

    #[test]
    fn now_survives_a_round_trip_unchanged() {
        let t = now();
        assert_eq!(from_millis(to_millis(t)), Some(t));
    }

    #[test]
    fn out_of_range_millis_is_none_not_a_panic() {
        assert!(from_millis(i64::MAX).is_none());
    }
}
