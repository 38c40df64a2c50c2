//! Timestamps are stored as integer milliseconds since the Unix epoch, everywhere.

use chrono::{DateTime, Utc};

/// Milliseconds since the epoch; sub-millisecond precision is dropped.
pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Now, truncated to what the store keeps, so values read back equal values written.
pub(crate) fn now() -> DateTime<Utc> {
    let millis = to_millis(Utc::now());
    DateTime::from_timestamp_millis(millis).unwrap_or_else(Utc::now)
}

/// Reads an integer-milliseconds column.
pub(crate) fn column(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    from_millis(row.get(idx)?, idx)
}

/// Reads a nullable integer-milliseconds column.
pub(crate) fn optional_column(
    row: &rusqlite::Row<'_>,
    idx: usize,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<i64>>(idx)?
        .map(|m| from_millis(m, idx))
        .transpose()
}

fn from_millis(millis: i64, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(idx, millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_drops_sub_millisecond_precision() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:20:30.123456Z")
            .unwrap()
            .to_utc();
        let back = DateTime::from_timestamp_millis(to_millis(t)).unwrap();
        assert_eq!(back.to_rfc3339(), "2024-05-01T10:20:30.123+00:00");
    }

    #[test]
    fn now_survives_a_round_trip_unchanged() {
        let t = now();
        assert_eq!(DateTime::from_timestamp_millis(to_millis(t)), Some(t));
    }

    #[test]
    fn out_of_range_millis_is_an_error_not_a_panic() {
        assert!(from_millis(i64::MAX, 3).is_err());
    }
}
