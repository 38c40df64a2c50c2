//! `clrk agents traces NAME`: an execution's trace as a waterfall, one line per span.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::Duration;

use clrk_server::terminal::escape_controls;
use clrk_wire::Trace;

use crate::cli::{ObjectFormat, TracesArgs};
use crate::client::ApiClient;
use crate::commands::Session;
use crate::error::CliError;
use crate::output;

/// Bar columns when stdout is not a terminal.
const PLAIN_WIDTH: usize = 60;
/// How often `-f` asks for a newer execution.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Columns of a span's name, indent included; longer names are cut.
const NAME_COLUMNS: usize = 36;

/// Prints the trace of an execution (the latest unless `--execution`); with `-f`, then each
/// newer execution's once it has ended.
pub async fn run(args: TracesArgs, session: &Session) -> anyhow::Result<()> {
    let api = session.api()?;
    let ns = args.namespace.namespace.as_str();
    let path = ["v1", "agents", ns, args.name.as_str(), "traces"];
    let width = bar_width();
    let show = |answer: &serde_json::Value| -> anyhow::Result<()> {
        match args.output {
            Some(ObjectFormat::Json) => output::print_json(answer),
            Some(ObjectFormat::Yaml) => output::print_yaml(answer),
            None => {
                let trace: Trace = serde_json::from_value(answer.clone())?;
                Ok(output::print(&waterfall(&trace, width))?)
            }
        }
    };
    if !args.follow {
        let answer = fetch(&api, &path, args.execution.as_deref()).await?;
        let trace: Trace = serde_json::from_value(answer.clone())?;
        if trace.status == "Running" {
            eprintln!(
                "execution {} is still running: its spans are stored when it ends",
                trace.execution_id
            );
        }
        return show(&answer);
    }
    let mut shown: Option<String> = None;
    let mut first = args.execution.as_deref();
    loop {
        match fetch(&api, &path, first.take()).await {
            Ok(answer) => {
                let trace: Trace = serde_json::from_value(answer.clone())?;
                let ended = trace.status != "Running" && !trace.spans.is_empty();
                if ended && shown.as_deref() != Some(trace.execution_id.as_str()) {
                    show(&answer)?;
                    shown = Some(trace.execution_id);
                }
            }
            // Nothing has run yet: wait for the first execution.
            Err(error)
                if matches!(
                    error.downcast_ref::<CliError>(),
                    Some(CliError::Api { status: 404, message }) if message.contains("has not run yet")
                ) => {}
            Err(error) => return Err(error),
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// The trace of `execution`, or of the latest execution.
async fn fetch(
    api: &ApiClient,
    path: &[&str],
    execution: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let query: Vec<(&str, String)> = execution
        .map(|id| ("execution", id.to_owned()))
        .into_iter()
        .collect();
    api.get(path, &query).await
}

/// Columns for the bars: the terminal's width less the text columns, or [`PLAIN_WIDTH`] when
/// stdout is not a terminal.
fn bar_width() -> usize {
    if !std::io::stdout().is_terminal() {
        return PLAIN_WIDTH;
    }
    terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .map_or(PLAIN_WIDTH, |w| w.saturating_sub(NAME_COLUMNS + 24).max(10))
}

/// The waterfall of `trace`: a header line, then one line per span, children under their
/// parent and indented by depth, with its start offset from the first span, its duration and
/// a bar `width` columns wide placing it in the whole.
///
/// ```
/// let trace: clrk_wire::Trace = serde_json::from_str(r#"{"executionId": "e1", "status": "Succeeded",
///   "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spans": [
///   {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "a000000000000001", "name": "execution",
///    "startUnixUs": 0, "durationUs": 1000}]}"#).unwrap();
/// let text = clrk::commands::agents::traces::waterfall(&trace, 10);
/// assert!(text.lines().nth(2).unwrap().ends_with("|##########|"));
/// ```
pub fn waterfall(trace: &Trace, width: usize) -> String {
    let mut out = format!(
        "execution {}  {}  trace {}\n",
        escape_controls(&trace.execution_id),
        trace.status,
        if trace.trace_id.is_empty() {
            "-"
        } else {
            &trace.trace_id
        }
    );
    if trace.spans.is_empty() {
        out.push_str("no spans stored (yet)\n");
        return out;
    }
    let width = width.max(1);
    let origin = trace
        .spans
        .iter()
        .map(|s| s.start_unix_us)
        .min()
        .unwrap_or(0);
    let end = trace
        .spans
        .iter()
        .map(|s| s.start_unix_us.saturating_add(s.duration_us.max(0)))
        .max()
        .unwrap_or(origin);
    let total = (end - origin).max(1);
    let _ = writeln!(
        out,
        "{:<NAME_COLUMNS$}  {:>9}  {:>9}",
        "SPAN", "START", "DURATION"
    );
    for (depth, span) in clrk_wire::in_tree_order(&trace.spans) {
        let mut name = format!("{}{}", "  ".repeat(depth), escape_controls(&span.name));
        if span.error.is_some() {
            name.push_str(" !");
        }
        let name = cut(&name, NAME_COLUMNS);
        let offset = span.start_unix_us - origin;
        let duration = span.duration_us.max(0);
        let _ = writeln!(
            out,
            "{name:<NAME_COLUMNS$}  {:>9}  {:>9}  |{}|",
            format!("+{}", micros(offset)),
            micros(duration),
            bar(offset, duration, total, width)
        );
    }
    out
}

/// A bar of `width` columns with the span's share filled, at least one column.
fn bar(offset: i64, duration: i64, total: i64, width: usize) -> String {
    let scale = |us: i64| -> usize {
        let cols = (i128::from(us) * width as i128) / i128::from(total);
        usize::try_from(cols.max(0))
            .unwrap_or(usize::MAX)
            .min(width)
    };
    let start = scale(offset).min(width - 1);
    let len = scale(duration).max(1).min(width - start);
    format!(
        "{}{}{}",
        " ".repeat(start),
        "#".repeat(len),
        " ".repeat(width - start - len)
    )
}

/// A duration in microseconds as `850us`, `12.3ms` or `1.25s`.
fn micros(us: i64) -> String {
    let us = us.max(0);
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

/// `text` cut to `columns` characters, its end marked with `~` when cut.
fn cut(text: &str, columns: usize) -> String {
    if text.chars().count() <= columns {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(columns - 1).collect();
    out.push('~');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clrk_wire::TraceSpan;

    fn span(id: &str, parent: Option<&str>, name: &str, start: i64, duration: i64) -> TraceSpan {
        TraceSpan {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: id.into(),
            parent_span_id: parent.map(Into::into),
            name: name.into(),
            start_unix_us: 1_000_000_000 + start,
            duration_us: duration,
            attributes: serde_json::Map::new(),
            error: None,
        }
    }

    fn trace(spans: Vec<TraceSpan>) -> Trace {
        Trace {
            execution_id: "e1".into(),
            status: "Succeeded".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            spans,
        }
    }

    #[test]
    fn spans_nest_under_their_parents_with_offsets_durations_and_bars() {
        // Stored by start time: the egress call (a child of run) comes before run ends.
        let spans = vec![
            span("r", Some("caller"), "execution", 0, 100_000),
            span("a", Some("r"), "admission", 0, 500),
            span("s", Some("r"), "sandbox start", 1_000, 40_000),
            span("i", Some("s"), "image prepare", 1_000, 10_000),
            span("t", Some("s"), "runtime start", 11_000, 30_000),
            span("g", Some("u"), "GET api.example.test", 60_000, 20_000),
            span("u", Some("r"), "run", 50_000, 50_000),
        ];
        let text = waterfall(&trace(spans), 20);
        assert_eq!(
            text,
            "execution e1  Succeeded  trace 4bf92f3577b34da6a3ce929d0e0e4736\n\
             SPAN                                      START   DURATION\n\
             execution                                  +0us    100.0ms  |####################|\n\
             \x20 admission                                +0us      500us  |#                   |\n\
             \x20 sandbox start                          +1.0ms     40.0ms  |########            |\n\
             \x20   image prepare                        +1.0ms     10.0ms  |##                  |\n\
             \x20   runtime start                       +11.0ms     30.0ms  |  ######            |\n\
             \x20 run                                   +50.0ms     50.0ms  |          ##########|\n\
             \x20   GET api.example.test                +60.0ms     20.0ms  |            ####    |\n"
        );
    }

    #[test]
    fn orphans_are_roots_failures_are_marked_and_names_escaped() {
        let mut failed = span("b", Some("elsewhere"), "GET \x1b[31mx", 10, 10);
        failed.error = Some("denied".into());
        let text = waterfall(&trace(vec![span("a", None, "execution", 0, 20), failed]), 4);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].starts_with("execution "), "{text}");
        assert!(lines[3].starts_with("GET \\x1b[31mx !"), "{text}");
        assert!(lines[3].ends_with("|  ##|"), "{text}");
    }

    #[test]
    fn an_empty_trace_says_so_and_long_names_are_cut() {
        assert!(waterfall(&trace(Vec::new()), 60).ends_with("no spans stored (yet)\n"));
        assert_eq!(cut("abcdef", 4), "abc~");
        assert_eq!(micros(1_250_000), "1.25s");
    }
}
