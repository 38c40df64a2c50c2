//! Presentation: aligned tables, JSON and YAML, and times relative to now.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::ListFormat;
use crate::duration::format_age;
use clrk_wire::{Condition, List};

/// A table with a header row, printed with columns aligned like `kubectl get`.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    ///
    /// ```
    /// let mut table = clrk::output::Table::new(["NAME", "AGE"]);
    /// table.row(["word-count", "2m"]);
    /// assert_eq!(table.render(), "NAME         AGE\nword-count   2m\n");
    /// ```
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells render empty.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as text, one line per row, three spaces between columns.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                let width = cell.chars().count();
                match widths.get_mut(i) {
                    Some(w) => *w = (*w).max(width),
                    None => widths.push(width),
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                line.push_str(cell);
                let pad = width - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad + 3));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Writes `text` to stdout.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Writes `value` to stdout as indented JSON.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(print(&text)?)
}

/// Writes `value` to stdout as YAML.
pub fn print_yaml<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_saphyr::to_string(value)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(print(&text)?)
}

/// Prints a list the server answered: JSON or YAML as it was sent, else the table `table`
/// makes of its items (the second argument: wide); with no items, only `empty` on stderr.
pub fn print_list<T: DeserializeOwned>(
    answer: Value,
    format: Option<ListFormat>,
    empty: &str,
    table: impl FnOnce(&[T], bool) -> Table,
) -> anyhow::Result<()> {
    match format {
        Some(ListFormat::Json) => print_json(&answer),
        Some(ListFormat::Yaml) => print_yaml(&answer),
        format => {
            let list: List<T> = serde_json::from_value(answer)?;
            if list.items.is_empty() {
                eprintln!("{empty}");
                return Ok(());
            }
            Ok(print(
                &table(&list.items, format == Some(ListFormat::Wide)).render(),
            )?)
        }
    }
}

/// How long before `now` an RFC 3339 time was, as `2m`; `-` when absent or unreadable.
///
/// ```
/// let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z").unwrap().to_utc();
/// assert_eq!(clrk::output::age_of(Some("2026-01-01T00:08:00Z"), now), "2m");
/// assert_eq!(clrk::output::age_of(None, now), "-");
/// ```
pub fn age_of(time: Option<&str>, now: DateTime<Utc>) -> String {
    time.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(
            || "-".to_string(),
            |t| format_age((now - t.to_utc()).num_seconds()),
        )
}

/// Like [`age_of`] with ` ago` appended; `-` when absent.
pub fn ago(time: Option<&str>, now: DateTime<Utc>) -> String {
    match age_of(time, now) {
        age if age == "-" => age,
        age => format!("{age} ago"),
    }
}

/// `None` for an empty string, which a server sends for a value it does not know.
///
/// ```
/// assert_eq!(clrk::output::or_dash(clrk::output::non_empty("")), "-");
/// ```
pub fn non_empty(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.is_empty())
}

/// A cell for an optional value: the value, or `-`.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A CONDITIONS column: the types of the conditions that do not hold (`get` says why), `-` if
/// none.
///
/// ```
/// use clrk_wire::Condition;
/// let unresolved = Condition { kind: "ReferencesResolved".into(), status: "False".into(),
///                              reason: "Unresolved".into(), message: String::new() };
/// assert_eq!(clrk::output::conditions_column(&[unresolved]), "ReferencesResolved");
/// assert_eq!(clrk::output::conditions_column(&[]), "-");
/// ```
pub fn conditions_column(conditions: &[Condition]) -> String {
    let kinds: Vec<&str> = conditions.iter().map(|c| c.kind.as_str()).collect();
    match kinds.as_slice() {
        [] => "-".to_string(),
        kinds => kinds.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell_and_lines_have_no_trailing_space() {
        let mut table = Table::new(["KIND", "NAME", "LAST-RUN"]);
        table.row(["TaskAgent", "a", "-"]);
        table.row(["TaskAgent", "word-count", ""]);
        assert_eq!(
            table.render(),
            "KIND        NAME         LAST-RUN\n\
             TaskAgent   a            -\n\
             TaskAgent   word-count\n"
        );
    }

    #[test]
    fn an_empty_table_is_just_the_header() {
        assert_eq!(Table::new(["ID", "STATUS"]).render(), "ID   STATUS\n");
    }

    #[test]
    fn ages_handle_missing_and_bad_times() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(ago(Some("2026-01-01T00:57:59.500+00:00"), now), "2m ago");
        assert_eq!(ago(Some("yesterday"), now), "-");
        assert_eq!(ago(None, now), "-");
        assert_eq!(or_dash(Some(3)), "3");
        assert_eq!(or_dash(None::<u8>), "-");
    }
}
