//! `spec.schedule` and `spec.timeZone` of a TaskAgent: parsing, and the next fire time.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::duration::GoDuration;
use crate::error::ManifestError;

/// What `spec.schedule` accepts, appended to every schedule error.
const SCHEDULE_FORMS: &str = "use 5 fields (minute hour day-of-month month day-of-week) like \
     \"*/5 * * * *\", or @hourly, @daily, @weekly, @monthly, or @every <duration> like @every 5m";
/// What `spec.timeZone` accepts.
const ZONE_FORMS: &str = "use an IANA zone name like UTC, Europe/Paris or America/New_York";
/// The shortest `@every` interval: a shorter one would keep the scheduler busy for nothing.
const MIN_EVERY: Duration = Duration::from_secs(1);

/// A parsed schedule read in its time zone.
///
/// ```
/// use chrono::{DateTime, Utc};
/// let hourly = clrk_api::Schedule::parse("@hourly", "UTC").unwrap();
/// let t: DateTime<Utc> = "2026-01-01T10:20:00Z".parse().unwrap();
/// assert_eq!(hourly.next_after(t).unwrap().to_rfc3339(), "2026-01-01T11:00:00+00:00");
///
/// let every = clrk_api::Schedule::parse("@every 90s", "UTC").unwrap();
/// assert_eq!(every.next_after(t).unwrap().to_rfc3339(), "2026-01-01T10:21:30+00:00");
///
/// assert!(clrk_api::Schedule::parse("* * *", "UTC").is_err());
/// let error = clrk_api::Schedule::parse("0 25 * * *", "UTC").unwrap_err().to_string();
/// assert!(error.contains("hour 25 is out of range (0-23)"), "{error}");
/// assert!(clrk_api::Schedule::parse("@daily", "Mars/Olympus").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    rule: Rule,
    zone: Tz,
}

#[derive(Debug, Clone)]
enum Rule {
    Cron(Box<Cron>),
    /// `@every <duration>`: fires every interval after the previous fire.
    Every(Duration),
}

impl Schedule {
    /// Parses a schedule and its zone. Errors name `spec.schedule` or `spec.timeZone` and
    /// say what is allowed.
    pub fn parse(expression: &str, time_zone: &str) -> Result<Schedule, ManifestError> {
        let rule = parse_rule(expression).map_err(|reason| ManifestError::InvalidSchedule {
            field: "spec.schedule",
            input: expression.to_owned(),
            reason,
        })?;
        let zone = parse_zone(time_zone).map_err(|reason| ManifestError::InvalidSchedule {
            field: "spec.timeZone",
            input: time_zone.to_owned(),
            reason,
        })?;
        Ok(Schedule { rule, zone })
    }

    /// The first fire time strictly after `after`; `None` when the expression never matches
    /// again (like February 30th).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.rule {
            Rule::Every(interval) => chrono::Duration::from_std(*interval)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
            Rule::Cron(cron) => cron
                .find_next_occurrence(&after.with_timezone(&self.zone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

fn parse_rule(expression: &str) -> Result<Rule, String> {
    let expression = expression.trim();
    if let Some(rest) = expression.strip_prefix("@every") {
        let text = rest.trim();
        let interval = GoDuration::from_str(text)
            .map_err(|e| format!("{e}; {SCHEDULE_FORMS}"))?
            .0;
        if interval < MIN_EVERY {
            return Err(format!(
                "the @every interval must be at least 1s; {SCHEDULE_FORMS}"
            ));
        }
        return Ok(Rule::Every(interval));
    }
    if expression.starts_with('@') {
        let known = [
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ];
        if !known.iter().any(|k| k.eq_ignore_ascii_case(expression)) {
            return Err(format!("unknown shorthand; {SCHEDULE_FORMS}"));
        }
    } else if expression.split_whitespace().count() != 5 {
        return Err(format!(
            "expected 5 fields, found {}; {SCHEDULE_FORMS}",
            expression.split_whitespace().count()
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map(|cron| Rule::Cron(Box::new(cron)))
        .map_err(|e| match out_of_range(expression) {
            Some(field) => format!("{field}; {SCHEDULE_FORMS}"),
            None => format!("{e}; {SCHEDULE_FORMS}"),
        })
}

/// The five fields of a cron expression, with the values each allows.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// Names the first field holding a number outside its range, e.g. `hour 25 is out of range
/// (0-23)`; `None` when every number is in range (the error is something else).
fn out_of_range(expression: &str) -> Option<String> {
    for (text, (name, low, high)) in expression.split_whitespace().zip(FIELDS) {
        for part in text.split(',') {
            // After `/` comes a step, not a value of the field.
            let values = part.split('/').next().unwrap_or_default();
            for value in values.split('-') {
                if let Ok(n) = value.parse::<u64>()
                    && !(u64::from(low)..=u64::from(high)).contains(&n)
                {
                    return Some(format!("{name} {value} is out of range ({low}-{high})"));
                }
            }
        }
    }
    None
}

fn parse_zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| format!("not a known IANA time zone; {ZONE_FORMS}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn next(expr: &str, zone: &str, after: &str) -> String {
        Schedule::parse(expr, zone)
            .unwrap()
            .next_after(at(after))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn five_field_expressions_and_shorthands() {
        assert_eq!(
            next("*/5 * * * *", "UTC", "2026-03-01T10:02:00Z"),
            "2026-03-01T10:05:00+00:00"
        );
        assert_eq!(
            next("@daily", "UTC", "2026-03-01T10:02:00Z"),
            "2026-03-02T00:00:00+00:00"
        );
        // 2026-03-01 is a Sunday: @weekly is midnight between Saturday and Sunday.
        assert_eq!(
            next("@weekly", "UTC", "2026-03-01T10:02:00Z"),
            "2026-03-08T00:00:00+00:00"
        );
        assert_eq!(
            next("@monthly", "UTC", "2026-03-01T10:02:00Z"),
            "2026-04-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@HOURLY", "UTC", "2026-03-01T10:02:00Z"),
            "2026-03-01T11:00:00+00:00"
        );
    }

    #[test]
    fn the_zone_decides_when_midnight_is() {
        // Paris is UTC+1 in winter.
        assert_eq!(
            next("0 0 * * *", "Europe/Paris", "2026-01-10T12:00:00Z"),
            "2026-01-10T23:00:00+00:00"
        );
    }

    #[test]
    fn every_adds_its_interval() {
        assert_eq!(
            next("@every 1m30s", "UTC", "2026-03-01T10:00:00Z"),
            "2026-03-01T10:01:30+00:00"
        );
        assert_eq!(
            next("@every  2s", "UTC", "2026-03-01T10:00:00Z"),
            "2026-03-01T10:00:02+00:00"
        );
    }

    #[test]
    fn bad_schedules_name_the_field_and_the_forms() {
        for bad in [
            "* * *",
            "0 * * * * *",
            "61 * * * *",
            "@reboot",
            "@every",
            "@every 0s",
            "@every 500ms",
            "@every soon",
        ] {
            let err = Schedule::parse(bad, "UTC").unwrap_err().to_string();
            assert!(err.starts_with("spec.schedule: "), "{bad}: {err}");
            assert!(err.contains("@every <duration>"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_zones_name_the_field() {
        let err = Schedule::parse("@daily", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("spec.timeZone: \"Mars/Olympus\""), "{err}");
        assert!(err.contains("IANA"), "{err}");
    }
}
