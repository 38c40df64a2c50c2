//! `clrk agents logs NAME`: print (and follow) an agent's log lines.

use std::io::{IsTerminal as _, Write};

use http::Method;
use http_body_util::BodyExt;

use super::agent_exists;
use crate::cli::{LogFormat, LogsArgs, Tail};
use crate::commands::Session;
use clrk_server::terminal::escape_controls;
use clrk_wire::LogLine;

/// Prints the agent's log lines as they arrive; with `-f` until the server ends or Ctrl-C.
pub async fn run(args: LogsArgs, session: &Session) -> anyhow::Result<()> {
    let path = [
        "v1",
        "agents",
        args.namespace.namespace.as_str(),
        args.name.as_str(),
        "logs",
    ];
    let mut query = Vec::new();
    if let Some(Tail::Last(tail)) = args.tail {
        query.push(("tail", tail.to_string()));
    }
    if args.follow {
        query.push(("follow", "true".to_string()));
    }
    if let Some(execution) = &args.execution {
        query.push(("execution", execution.clone()));
    }
    let response = session.api()?.open(Method::GET, &path, &query).await?;
    // The server keeps the log of a deleted agent (a name never used is its 404): say whose
    // log this is.
    let deleted = !agent_exists(session, &args.namespace.namespace, &args.name).await?;
    if deleted {
        eprintln!(
            "agent {}/{} is deleted: showing the log of the deleted agent",
            args.namespace.namespace, args.name
        );
    }
    let mut body = response.into_body();
    let mut lines = LineSplitter::default();
    let print = Printer {
        json: args.output == Some(LogFormat::Json),
        terminal: std::io::stdout().is_terminal(),
    };
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = &mut interrupted => return Ok(()),
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            anyhow::anyhow!(
                "the clrk server ended the log stream of {} early: {e}",
                args.name
            )
        })?;
        if let Ok(data) = frame.into_data() {
            print.lines(lines.push(&data))?;
        }
    }
    print.lines(lines.finish())?;
    // A followed log ends when its agent goes: say so, rather than end in silence.
    if args.follow
        && !deleted
        && !agent_exists(session, &args.namespace.namespace, &args.name).await?
    {
        eprintln!(
            "agent {}/{} was deleted; its log ends here",
            args.namespace.namespace, args.name
        );
    }
    Ok(())
}

/// How records are printed: as JSON, or formatted with the agent's control characters
/// escaped when stdout is a terminal (an agent must not drive the operator's terminal).
struct Printer {
    json: bool,
    terminal: bool,
}

impl Printer {
    fn lines(&self, raw: Vec<Vec<u8>>) -> anyhow::Result<()> {
        if raw.is_empty() {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        for line in raw {
            if self.json {
                stdout.write_all(&line)?;
                stdout.write_all(b"\n")?;
                continue;
            }
            match serde_json::from_slice::<LogLine>(&line) {
                Ok(parsed) if self.terminal => {
                    writeln!(stdout, "{}", escape_controls(&format_line(&parsed)))?;
                }
                Ok(parsed) => writeln!(stdout, "{}", format_line(&parsed))?,
                Err(error) => tracing::warn!(%error, "skipping a log record the CLI cannot read"),
            }
        }
        stdout.flush()?;
        Ok(())
    }
}

/// `<execution-id> <line>`, with the stream name for anything but stderr.
///
/// ```
/// let line: clrk_wire::LogLine =
///     serde_json::from_str(r#"{"executionId": "9f1c", "stream": "stderr", "line": "counting"}"#).unwrap();
/// assert_eq!(clrk::commands::agents::logs::format_line(&line), "9f1c counting");
/// ```
pub fn format_line(line: &LogLine) -> String {
    let id = match line.execution_id.as_str() {
        "" => "-",
        id => id,
    };
    match line.stream.as_str() {
        "" | "stderr" => format!("{id} {}", line.line),
        stream => format!("{id} [{stream}] {}", line.line),
    }
}

/// Splits a byte stream into newline-terminated records, whatever the chunk boundaries.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds a chunk and returns the records it completes (without their newlines).
    ///
    /// ```
    /// let mut lines = clrk::commands::agents::logs::LineSplitter::default();
    /// assert!(lines.push(b"{\"a\"").is_empty());
    /// assert_eq!(lines.push(b":1}\n{"), vec![b"{\"a\":1}".to_vec()]);
    /// ```
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut complete = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let mut record: Vec<u8> = self.pending.drain(..=end).collect();
            record.pop();
            if !record.iter().all(u8::is_ascii_whitespace) {
                complete.push(record);
            }
        }
        complete
    }

    /// The last record when the stream ended without a newline.
    pub fn finish(self) -> Vec<Vec<u8>> {
        if self.pending.iter().all(u8::is_ascii_whitespace) {
            Vec::new()
        } else {
            vec![self.pending]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_any_chunking() {
        let stream = b"{\"n\":1}\n{\"n\":2}\n\n{\"n\":3}";
        for size in 1..stream.len() {
            let mut lines = LineSplitter::default();
            let mut records = Vec::new();
            for chunk in stream.chunks(size) {
                records.extend(lines.push(chunk));
            }
            records.extend(lines.finish());
            assert_eq!(
                records,
                [
                    b"{\"n\":1}".to_vec(),
                    b"{\"n\":2}".to_vec(),
                    b"{\"n\":3}".to_vec()
                ],
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn lines_carry_execution_id_and_non_stderr_stream() {
        let line = |json: &str| format_line(&serde_json::from_str(json).unwrap());
        assert_eq!(
            line(
                r#"{"seq": 1, "time": "t", "executionId": "e1", "stream": "stderr", "line": "hi"}"#
            ),
            "e1 hi"
        );
        assert_eq!(
            line(
                r#"{"seq": 2, "time": "t", "executionId": "e1", "stream": "stdout", "line": "up"}"#
            ),
            "e1 [stdout] up"
        );
        assert_eq!(line(r#"{"line": "x"}"#), "- x");
    }
}
