//! HTTP to the control API: URLs, the bearer token, JSON bodies and error answers.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::discovery::Endpoints;
use crate::error::CliError;

/// Bytes that stay literal in a path segment or query value (RFC 3986 "unreserved").
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const JSON: &str = "application/json";

/// How long to wait for a TCP connection; a loopback server answers in far less.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body: a whole buffer, or a stream such as an uploaded file.
pub type RequestBody = BoxBody<Bytes, std::io::Error>;

/// The plain-HTTP client every command uses (the server listens on loopback without TLS).
pub type HttpClient = Client<HttpConnector, RequestBody>;

/// A request body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> RequestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A new HTTP client.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Joins a base URL, path segments (each percent-encoded) and a query.
///
/// ```
/// let url = clrk::client::join_url("http://h:1", &["v1", "agents", "a b"], &[("tail", "5".into())]);
/// assert_eq!(url, "http://h:1/v1/agents/a%20b?tail=5");
/// ```
pub fn join_url(base: &str, segments: &[&str], query: &[(&str, String)]) -> String {
    let mut url = base.trim_end_matches('/').to_string();
    for segment in segments {
        url.push('/');
        url.extend(utf8_percent_encode(segment, UNRESERVED));
    }
    for (i, (key, value)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(key);
        url.push('=');
        url.extend(utf8_percent_encode(value, UNRESERVED));
    }
    url
}

/// Checks that `url` is a plain-HTTP base URL and parses it.
pub fn parse_base(url: &str) -> Result<Uri, CliError> {
    let bad = || CliError::BadUrl {
        url: url.to_string(),
    };
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(bad());
    }
    Ok(uri)
}

/// Sends `request`, turning a failure to connect into [`CliError::Unreachable`].
pub async fn send(
    http: &HttpClient,
    base: &str,
    request: Request<RequestBody>,
) -> anyhow::Result<Response<Incoming>> {
    let target = request.uri().to_string();
    http.request(request).await.map_err(|e| {
        if e.is_connect() {
            CliError::Unreachable {
                url: base.to_string(),
                reason: root_cause(&e),
            }
            .into()
        } else {
            anyhow::Error::new(e).context(format!("request to {target} failed"))
        }
    })
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Pulls the sentence out of an error body: `{"error": "..."}`, else the text itself.
///
/// ```
/// assert_eq!(clrk::client::error_message(br#"{"error":"agent default/x not found"}"#), "agent default/x not found");
/// assert_eq!(clrk::client::error_message(b"no ready revision\n"), "no ready revision");
/// ```
pub fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<clrk_wire::ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

/// A client for the control API of one server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: HttpClient,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client for the API in `endpoints`.
    ///
    /// ```
    /// use clrk::discovery::Endpoints;
    /// let endpoints = Endpoints { api: "http://127.0.0.1:17070".into(), ingress: None, token: None };
    /// assert!(clrk::client::ApiClient::new(&endpoints).is_ok());
    /// ```
    pub fn new(endpoints: &Endpoints) -> Result<Self, CliError> {
        parse_base(&endpoints.api)?;
        Ok(Self {
            http: http_client(),
            base: endpoints.api.clone(),
            token: endpoints.token.clone(),
        })
    }

    /// `GET` a JSON answer.
    pub async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let response = self.open(Method::GET, segments, query).await?;
        read_json(response).await
    }

    /// `POST` a JSON body and read a JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        self.send_json(Method::POST, segments, body).await
    }

    /// `PUT` a JSON body and read a JSON answer.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        self.send_json(Method::PUT, segments, body).await
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        let body = full(serde_json::to_vec(body)?);
        let response = self
            .send(method, segments, &[], JSON, Some((JSON, body)))
            .await?;
        read_json(response).await
    }

    /// `POST` a JSON body asking for an answer of type `accept` (e.g. a stream of lines),
    /// returned unread.
    pub async fn post_for<B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
        accept: &str,
    ) -> anyhow::Result<Response<Incoming>> {
        let body = full(serde_json::to_vec(body)?);
        self.send(Method::POST, segments, &[], accept, Some((JSON, body)))
            .await
    }

    /// `POST` a streamed body (e.g. a file) as `application/octet-stream` and read a JSON answer.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        body: RequestBody,
    ) -> anyhow::Result<T> {
        let response = self
            .send(
                Method::POST,
                segments,
                query,
                JSON,
                Some(("application/octet-stream", body)),
            )
            .await?;
        read_json(response).await
    }

    /// `DELETE` and read a JSON answer.
    pub async fn delete<T: DeserializeOwned>(&self, segments: &[&str]) -> anyhow::Result<T> {
        let response = self.send(Method::DELETE, segments, &[], JSON, None).await?;
        read_json(response).await
    }

    /// Sends a body-less request and returns the successful response unread, for streaming.
    pub async fn open(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<Response<Incoming>> {
        self.send(method, segments, query, JSON, None).await
    }

    /// Sends a request asking for `accept`, with a body of the given content type if any.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        accept: &str,
        body: Option<(&str, RequestBody)>,
    ) -> anyhow::Result<Response<Incoming>> {
        let url = join_url(&self.base, segments, query);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(ACCEPT, accept);
        let body = match body {
            Some((content_type, body)) => {
                request = request.header(CONTENT_TYPE, content_type);
                body
            }
            None => full(Bytes::new()),
        };
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(body)
            .with_context(|| format!("cannot build a request for {url}"))?;
        tracing::debug!(%method, %url, "control API request");
        let response = send(&self.http, &self.base, request).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        Err(self.status_error(status, &method, &url, &body).into())
    }

    fn status_error(
        &self,
        status: StatusCode,
        method: &Method,
        url: &str,
        body: &[u8],
    ) -> CliError {
        if status == StatusCode::UNAUTHORIZED {
            return CliError::Unauthorized {
                url: self.base.clone(),
            };
        }
        let message = match error_message(body) {
            m if m.is_empty() => format!("the clrk server answered {status} to {method} {url}"),
            m => m,
        };
        CliError::Api {
            status: status.as_u16(),
            message,
        }
    }
}

/// Reads a body of one JSON value per line, handing each to `on_line` as it arrives.
pub async fn read_json_lines<T: DeserializeOwned>(
    response: Response<Incoming>,
    mut on_line: impl FnMut(T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    let broken = "the clrk server closed the connection before its answer was complete";
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.context(broken)?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value = serde_json::from_slice(&line).context(
                "the clrk server's answer is not what this clrk expects: check that the CLI and server versions match",
            )?;
            on_line(value)?;
        }
    }
    Ok(())
}

async fn read_json<T: DeserializeOwned>(response: Response<Incoming>) -> anyhow::Result<T> {
    let body = response
        .into_body()
        .collect()
        .await
        .context("the clrk server closed the connection before its answer was complete")?
        .to_bytes();
    serde_json::from_slice(&body).context(
        "the clrk server's answer is not what this clrk expects: check that the CLI and server versions match",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_query_values() {
        assert_eq!(
            join_url(
                "http://127.0.0.1:17070/",
                &["v1", "agents", "ns", "a/b"],
                &[]
            ),
            "http://127.0.0.1:17070/v1/agents/ns/a%2Fb"
        );
        assert_eq!(
            join_url(
                "http://h",
                &["v1", "agents"],
                &[("namespace", "x&y".into()), ("follow", "true".into())]
            ),
            "http://h/v1/agents?namespace=x%26y&follow=true"
        );
    }

    #[test]
    fn only_plain_http_base_urls_are_accepted() {
        assert!(parse_base("http://127.0.0.1:17070").is_ok());
        for bad in ["https://h:1", "127.0.0.1:17070", "not a url", "http://"] {
            let err = parse_base(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn error_bodies_yield_the_servers_sentence() {
        assert_eq!(error_message(br#"{"error": "boom"}"#), "boom");
        assert_eq!(error_message(b"  plain text \n"), "plain text");
        assert_eq!(error_message(b""), "");
    }
}
