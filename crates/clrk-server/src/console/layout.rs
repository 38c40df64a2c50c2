//! What every console page shares: the HTML shell with its navigation, the headers that keep
//! pages out of caches and frames and forbid inline script, and small text formats.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// Scripts and styles only from the console's own assets; no frames, no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     form-action 'self'; base-uri 'none'";

/// Adds the console's security headers to every answer under `/ui/`.
pub async fn protect(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A whole page: `title` in the tab and as its heading, the navigation, then `body`.
pub fn page(title: &str, body: Markup) -> Response {
    Html(shell(title, true, body).into_string()).into_response()
}

/// A page that says what is missing, with `status`.
pub fn missing(status: StatusCode, what: &str) -> Response {
    let body = html! { p.notice { (what) } p { a href="/ui/" { "Back to the agents" } } };
    (status, Html(shell("Not found", true, body).into_string())).into_response()
}

/// The HTML shell; `signed_in` shows the navigation and the logout button.
pub fn shell(title: &str, signed_in: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · clrk" }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "clrk" }
                    @if signed_in {
                        nav {
                            a href="/ui/" { "Agents" }
                            a href="/ui/pools" { "Pools & workers" }
                        }
                        form.logout method="post" action="/ui/logout" {
                            button type="submit" id="logout" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// Milliseconds as people read them: `840 ms`, `3.2 s`, `2 min 5 s`.
pub fn millis(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A time to the second, UTC.
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The CSS class of an execution status, for its colour.
pub fn status_class(status: &str) -> &'static str {
    match status {
        "Succeeded" => "ok",
        "Running" => "running",
        "Stopped" => "muted",
        _ => "bad",
    }
}

/// `/ui/agents/{namespace}/{name}`.
pub fn agent_href(namespace: &str, name: &str) -> String {
    format!("/ui/agents/{namespace}/{name}")
}

/// `/ui/executions/{id}`.
pub fn execution_href(id: &str) -> String {
    format!("/ui/executions/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(millis(None), "—");
        assert_eq!(millis(Some(840)), "840 ms");
        assert_eq!(millis(Some(3250)), "3.2 s");
        assert_eq!(millis(Some(125_000)), "2 min 5 s");
    }

    #[test]
    fn what_a_title_holds_is_escaped() {
        let text = shell("<script>x</script>", false, html! {}).into_string();
        assert!(text.contains("&lt;script&gt;x&lt;/script&gt;"), "{text}");
        assert!(!text.contains("<script>x"));
    }
}
