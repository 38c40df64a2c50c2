//! `clrk agents run-task NAME`: one execution through the ingress, output streamed to stdout.

use std::io::Read;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, TE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;

use clrk_wire::headers::{EXECUTION_ID, EXIT_CODE, TASK_AGENT, TIMEOUT, TRIGGER};

use crate::cli::RunTaskArgs;
use crate::client::{self, RequestBody, error_message, http_client, parse_base};
use crate::commands::Session;
use crate::commands::agents::agent_exists;
use crate::error::CliError;
use clrk_server::terminal::escape_controls;

/// An error body larger than this is cut: it is a message, not output.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Lines of a failed execution's stderr shown with its error.
const STDERR_SHOWN: usize = 5;
/// Bytes of its log read for them at most.
const LOG_READ_LIMIT: usize = 64 * 1024;

/// What `run-task` sends: everything but the ingress address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    /// Namespace of the TaskAgent.
    pub namespace: String,
    /// Name of the TaskAgent.
    pub name: String,
    /// Validated JSON event data, if `-i` was given.
    pub input: Option<Bytes>,
    /// Extra headers from `-H`, applied last so they win.
    pub headers: Vec<(String, String)>,
    /// `--timeout`, passed to the server as `X-Clrk-Timeout`.
    pub timeout: Option<String>,
}

/// Runs the agent once and mirrors its outcome in the exit code (0, 1, 124 or 77).
pub async fn run(args: RunTaskArgs, session: &Session) -> anyhow::Result<()> {
    let endpoints = session.endpoints()?;
    let ingress = endpoints.ingress.ok_or_else(|| {
        anyhow!(
            "no ingress URL for the server at {}: set --ingress or CLRK_INGRESS",
            endpoints.api
        )
    })?;
    parse_base(&ingress)?;
    let input = match &args.input {
        Some(spec) => Some(read_input(spec, std::io::stdin().lock())?),
        None => None,
    };
    let task = TaskRequest {
        namespace: args.namespace.namespace,
        name: args.name,
        input,
        headers: args.headers,
        timeout: args.timeout,
    };
    let request = build_request(&ingress, &task)?;
    tracing::debug!(namespace = %task.namespace, name = %task.name, %ingress, "invoking task agent");
    let response = client::send(&http_client(), &ingress, request).await?;
    let execution = response
        .headers()
        .get(EXECUTION_ID)
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned);
    if session.global.verbose
        && let Some(id) = &execution
    {
        eprintln!("execution: {id}");
    }
    let status = response.status();
    let error = if status == StatusCode::OK {
        let trailers = stream_to_stdout(response.into_body(), &task).await?;
        match streamed_outcome(&trailers).map_err(anyhow::Error::downcast::<CliError>) {
            Ok(()) => return Ok(()),
            Err(Ok(error)) => error,
            Err(Err(other)) => return Err(other),
        }
    } else {
        let headers = response.headers().clone();
        let body = Limited::new(response.into_body(), ERROR_BODY_LIMIT)
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        failure(status, &headers, &error_message(&body), &task)
    };
    // A refused request made no execution; a failed one says where to look, and that its
    // agent was deleted if it was: its record and log are kept.
    match (error, execution) {
        (error @ CliError::Rejected { .. }, _) | (error, None) => Err(error.into()),
        (error, Some(id)) => {
            let stderr = last_stderr_lines(session, &task, &id).await;
            let mut details = execution_details(&task, &id, &stderr);
            if !agent_exists(session, &task.namespace, &task.name)
                .await
                .unwrap_or(true)
            {
                details = format!("{}\n{details}", deleted_details(&task));
            }
            Err(CliError::Execution {
                failure: Box::new(error),
                details,
            }
            .into())
        }
    }
}

/// What precedes the details of an execution whose agent was deleted during the run: the
/// command that still lists it.
///
/// ```
/// use clrk::commands::run_task::{deleted_details, TaskRequest};
/// let task = TaskRequest { namespace: "team".into(), name: "slow".into(), input: None, headers: vec![], timeout: None };
/// assert_eq!(
///     deleted_details(&task),
///     "the agent team/slow was deleted during the run; its executions are kept: \
///      see: clrk agents invocations slow -n team"
/// );
/// ```
pub fn deleted_details(task: &TaskRequest) -> String {
    format!(
        "the agent {}/{} was deleted during the run; its executions are kept: \
         see: clrk agents invocations {}{}",
        task.namespace,
        task.name,
        task.name,
        namespace_flag(&task.namespace)
    )
}

/// ` -n NS` for a namespace other than `default`, which commands take without the flag.
fn namespace_flag(namespace: &str) -> String {
    match namespace {
        "default" => String::new(),
        other => format!(" -n {other}"),
    }
}

/// The last [`STDERR_SHOWN`] lines execution `id` wrote on stderr; none when they cannot be
/// read (the error is still worth showing without them).
async fn last_stderr_lines(session: &Session, task: &TaskRequest, id: &str) -> Vec<String> {
    let path = [
        "v1",
        "agents",
        task.namespace.as_str(),
        task.name.as_str(),
        "logs",
    ];
    let query = [("execution", id.to_owned()), ("tail", "50".to_owned())];
    let read = async {
        let response = session.api()?.open(Method::GET, &path, &query).await?;
        let body = Limited::new(response.into_body(), LOG_READ_LIMIT)
            .collect()
            .await
            .map_err(|e| anyhow!("{e}"))?
            .to_bytes();
        anyhow::Ok(body)
    };
    let body = match read.await {
        Ok(body) => body,
        Err(error) => {
            tracing::debug!(%error, execution = id, "could not read the execution's log");
            return Vec::new();
        }
    };
    let lines: Vec<String> = body
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<clrk_wire::LogLine>(line).ok())
        .filter(|line| line.stream == "stderr")
        .map(|line| line.line)
        .collect();
    lines[lines.len().saturating_sub(STDERR_SHOWN)..].to_vec()
}

/// What follows a failed execution's error: its id, the end of its stderr, and the command
/// that shows all of its log.
///
/// ```
/// use clrk::commands::run_task::{execution_details, TaskRequest};
/// let task = TaskRequest { namespace: "team".into(), name: "wc".into(), input: None, headers: vec![], timeout: None };
/// let text = execution_details(&task, "9f1c", &["Traceback (most recent call last):".into()]);
/// assert!(text.contains("execution 9f1c"));
/// assert!(text.contains("  | Traceback"));
/// assert!(text.ends_with("see: clrk agents logs wc -n team --execution 9f1c"));
/// ```
pub fn execution_details(task: &TaskRequest, id: &str, stderr: &[String]) -> String {
    let mut text = if stderr.is_empty() {
        format!("execution {id} wrote nothing on stderr\n")
    } else {
        let mut text = format!("execution {id}, the end of its stderr:\n");
        for line in stderr {
            // The agent's text: it must not drive the operator's terminal.
            text.push_str(&format!("  | {}\n", escape_controls(line)));
        }
        text
    };
    text.push_str(&format!(
        "see: clrk agents logs {}{} --execution {id}",
        task.name,
        namespace_flag(&task.namespace)
    ));
    text
}

/// Reads `-i`: a JSON literal, `@FILE`, or `-` for stdin, and checks that it is JSON.
///
/// ```
/// let body = clrk::commands::run_task::read_input(r#"{"text":"hi"}"#, std::io::empty()).unwrap();
/// assert_eq!(&body[..], br#"{"text":"hi"}"#);
/// assert!(clrk::commands::run_task::read_input("{oops", std::io::empty()).is_err());
/// ```
pub fn read_input(spec: &str, mut stdin: impl Read) -> anyhow::Result<Bytes> {
    let (origin, data) = if spec == "-" {
        let mut data = Vec::new();
        stdin
            .read_to_end(&mut data)
            .context("cannot read the -i input from stdin")?;
        ("stdin".to_string(), data)
    } else if let Some(path) = spec.strip_prefix('@') {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read the -i input file {path}"))?;
        (format!("file {path}"), data)
    } else {
        ("the -i argument".to_string(), spec.as_bytes().to_vec())
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(&data)
        .map_err(|e| anyhow!("the input from {origin} is not valid JSON: {e}"))?;
    Ok(Bytes::from(data))
}

/// The ingress request for `task`.
///
/// ```
/// use clrk::commands::run_task::{build_request, TaskRequest};
/// let task = TaskRequest { namespace: "default".into(), name: "word-count".into(),
///     input: None, headers: vec![], timeout: None };
/// let request = build_request("http://127.0.0.1:18080", &task).unwrap();
/// assert_eq!(request.headers()["x-clrk-taskagent"], "default/word-count");
/// ```
pub fn build_request(ingress: &str, task: &TaskRequest) -> anyhow::Result<Request<RequestBody>> {
    let mut headers = HeaderMap::new();
    let target = format!("{}/{}", task.namespace, task.name);
    headers.insert(
        HeaderName::from_static(TASK_AGENT),
        HeaderValue::from_str(&target)
            .map_err(|_| anyhow!("agent name '{target}' cannot travel in an HTTP header"))?,
    );
    headers.insert(
        HeaderName::from_static(TRIGGER),
        HeaderValue::from_static("cli"),
    );
    // Without TE: trailers the server cannot report an exit code after output has started.
    headers.insert(TE, HeaderValue::from_static("trailers"));
    if task.input.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(timeout) = &task.timeout {
        headers.insert(
            HeaderName::from_static(TIMEOUT),
            HeaderValue::from_str(timeout)
                .map_err(|_| anyhow!("timeout '{timeout}' is not a duration"))?,
        );
    }
    for (name, value) in &task.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| anyhow!("'{name}' is not a valid HTTP header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            anyhow!("the value of header '{name}' has characters HTTP does not allow")
        })?;
        headers.insert(name, value);
    }
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/", ingress.trim_end_matches('/')))
        .body(client::full(task.input.clone().unwrap_or_default()))
        .with_context(|| format!("'{ingress}' is not a valid ingress URL"))?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Copies the body to stdout as it arrives and returns the trailers (empty when none came).
async fn stream_to_stdout(mut body: Incoming, task: &TaskRequest) -> anyhow::Result<HeaderMap> {
    let mut stdout = tokio::io::stdout();
    let mut trailers = HeaderMap::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            anyhow!(
                "the ingress closed the response of {}/{} before it finished: {e}",
                task.namespace,
                task.name
            )
        })?;
        match frame.into_data() {
            Ok(data) => {
                stdout.write_all(&data).await?;
                stdout.flush().await?;
            }
            Err(frame) => {
                if let Ok(more) = frame.into_trailers() {
                    trailers.extend(more);
                }
            }
        }
    }
    Ok(trailers)
}

/// The agent's exit code from `X-Clrk-Exit-Code`, if present and numeric.
///
/// ```
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert("x-clrk-exit-code", "3".parse().unwrap());
/// assert_eq!(clrk::commands::run_task::exit_code(&trailers), Some(3));
/// ```
pub fn exit_code(headers: &HeaderMap) -> Option<i32> {
    headers.get(EXIT_CODE)?.to_str().ok()?.trim().parse().ok()
}

/// After streamed output the trailer tells how the run ended: a number is the exit code,
/// `timeout` means the execution hit its timeout, `failed` that clrk stopped it.
///
/// ```
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert("x-clrk-exit-code", "timeout".parse().unwrap());
/// let err = clrk::commands::run_task::streamed_outcome(&trailers).unwrap_err();
/// assert_eq!(clrk::error::exit_code_for(&err), 124);
/// ```
pub fn streamed_outcome(trailers: &HeaderMap) -> anyhow::Result<()> {
    let value = trailers
        .get(EXIT_CODE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match (value, exit_code(trailers)) {
        (_, Some(code)) if code != 0 => Err(CliError::AgentExited { code }.into()),
        (Some("timeout"), _) => Err(CliError::TimedOut {
            message: "execution timed out after part of its output was sent".into(),
        }
        .into()),
        (Some("failed"), _) => Err(CliError::Api {
            status: 200,
            message: "the execution was stopped by clrk after part of its output was sent".into(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// The error for a response other than 200, carrying run-task's exit code.
///
/// ```
/// use clrk::commands::run_task::{failure, TaskRequest};
/// let task = TaskRequest { namespace: "default".into(), name: "x".into(), input: None, headers: vec![], timeout: None };
/// let err = failure(http::StatusCode::GATEWAY_TIMEOUT, &http::HeaderMap::new(), "execution timed out after 1s", &task);
/// assert_eq!(err.exit_code(), 124);
/// ```
pub fn failure(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    task: &TaskRequest,
) -> CliError {
    let said = message;
    let message = match said {
        "" => format!(
            "the ingress answered {status} for {}/{}",
            task.namespace, task.name
        ),
        m => m.to_string(),
    };
    match status.as_u16() {
        500 => match exit_code(headers) {
            Some(code) if said.is_empty() || said == CliError::AgentExited { code }.to_string() => {
                CliError::AgentExited { code }
            }
            // The server's sentence says more than the code (`killed: memory limit 128Mi
            // exceeded`), or there is no code.
            _ => CliError::Api {
                status: 500,
                message,
            },
        },
        504 => CliError::TimedOut { message },
        400 | 404 | 409 | 413 | 429 | 503 => {
            let retry = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|after| format!(" (retry after {after}s)"))
                .unwrap_or_default();
            CliError::Rejected {
                status: status.as_u16(),
                message: format!("{message}{retry}"),
            }
        }
        other => CliError::Api {
            status: other,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> TaskRequest {
        TaskRequest {
            namespace: "default".into(),
            name: "word-count".into(),
            input: None,
            headers: Vec::new(),
            timeout: None,
        }
    }

    #[test]
    fn input_comes_from_literal_file_or_stdin() {
        assert_eq!(
            &read_input("[1,2]", std::io::empty()).unwrap()[..],
            b"[1,2]"
        );
        assert_eq!(
            &read_input("-", &b"{\"a\": 1}"[..]).unwrap()[..],
            b"{\"a\": 1}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("event.json");
        std::fs::write(&file, "{\"text\": \"hello\"}").unwrap();
        let body = read_input(&format!("@{}", file.display()), std::io::empty()).unwrap();
        assert_eq!(&body[..], b"{\"text\": \"hello\"}");
    }

    #[test]
    fn invalid_input_names_its_origin_and_position() {
        let err = read_input("{\"a\": }", std::io::empty())
            .unwrap_err()
            .to_string();
        assert!(err.contains("the -i argument"), "{err}");
        assert!(err.contains("line 1 column 7"), "{err}");
        let err = read_input("-", &b"\n\nnope"[..]).unwrap_err().to_string();
        assert!(err.contains("stdin") && err.contains("line 3"), "{err}");
        let err = read_input("@/nonexistent/event.json", std::io::empty()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/event.json"), "{err}");
    }

    #[test]
    fn request_carries_routing_trailers_input_and_timeout() {
        let task = TaskRequest {
            input: Some(Bytes::from_static(b"{}")),
            headers: vec![
                ("x-request-id".into(), "abc".into()),
                ("X-Clrk-Trigger".into(), "test".into()),
            ],
            timeout: Some("30s".into()),
            ..task()
        };
        let request = build_request("http://127.0.0.1:18080/", &task).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "http://127.0.0.1:18080/");
        let headers = request.headers();
        assert_eq!(headers["x-clrk-taskagent"], "default/word-count");
        assert_eq!(
            headers["x-clrk-trigger"], "test",
            "-H overrides the defaults"
        );
        assert_eq!(headers["te"], "trailers");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-clrk-timeout"], "30s");
        assert_eq!(headers["x-request-id"], "abc");
    }

    #[test]
    fn request_without_input_has_no_content_type() {
        let request = build_request("http://127.0.0.1:18080", &task()).unwrap();
        assert!(request.headers().get(CONTENT_TYPE).is_none());
        assert!(request.headers().get("x-clrk-timeout").is_none());
        assert_eq!(request.headers()["x-clrk-trigger"], "cli");
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        let empty = HeaderMap::new();
        let mut exited = HeaderMap::new();
        exited.insert(EXIT_CODE, HeaderValue::from_static("3"));

        let err = failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            &exited,
            "agent exited with code 3",
            &task(),
        );
        assert_eq!(
            (err.exit_code(), err.to_string()),
            (1, "agent exited with code 3".into())
        );

        let err = failure(
            StatusCode::GATEWAY_TIMEOUT,
            &empty,
            "execution timed out after 2s",
            &task(),
        );
        assert_eq!(
            (err.exit_code(), err.to_string()),
            (124, "execution timed out after 2s".into())
        );

        for status in [400, 404, 409, 413, 429, 503] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                failure(status, &empty, "no", &task()).exit_code(),
                77,
                "{status}"
            );
        }
        assert_eq!(
            failure(StatusCode::BAD_GATEWAY, &empty, "", &task()).exit_code(),
            1
        );
        assert_eq!(
            failure(StatusCode::INTERNAL_SERVER_ERROR, &empty, "oops", &task()).exit_code(),
            1
        );
    }

    #[test]
    fn rejections_keep_the_servers_message_and_retry_hint() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        let err = failure(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            "word-count is at maxConcurrent 1",
            &task(),
        );
        assert_eq!(
            err.to_string(),
            "word-count is at maxConcurrent 1 (retry after 2s)"
        );
        let err = failure(StatusCode::NOT_FOUND, &HeaderMap::new(), "", &task());
        assert_eq!(
            err.to_string(),
            "the ingress answered 404 Not Found for default/word-count"
        );
    }

    #[test]
    fn a_500_with_an_exit_code_says_the_servers_reason_when_it_has_one() {
        let mut headers = HeaderMap::new();
        headers.insert(EXIT_CODE, HeaderValue::from_static("137"));
        let killed = "killed: memory limit 128Mi exceeded; raise spec.resources.memory";
        let err = failure(StatusCode::INTERNAL_SERVER_ERROR, &headers, killed, &task());
        assert_eq!((err.exit_code(), err.to_string()), (1, killed.into()));
        headers.insert(EXIT_CODE, HeaderValue::from_static("3"));
        let err = failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            &headers,
            "agent exited with code 3",
            &task(),
        );
        assert!(matches!(err, CliError::AgentExited { code: 3 }), "{err:?}");
    }

    #[test]
    fn exit_code_ignores_garbage() {
        let mut headers = HeaderMap::new();
        assert_eq!(exit_code(&headers), None);
        headers.insert(EXIT_CODE, HeaderValue::from_static("x"));
        assert_eq!(exit_code(&headers), None);
        headers.insert(EXIT_CODE, HeaderValue::from_static(" 0 "));
        assert_eq!(exit_code(&headers), Some(0));
    }
}
