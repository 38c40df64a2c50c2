//! The console's session: the API token, given once to the login form or as `?token=`, then
//! carried by an HttpOnly, SameSite=Strict cookie and checked like a bearer token.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::api::auth::Token;

/// The cookie's name.
pub const COOKIE: &str = "clrk_token";

/// Checks and issues the console's cookie.
#[derive(Clone)]
pub struct Session {
    token: Token,
    secure: bool,
}

impl Session {
    pub fn new(token: Token, secure: bool) -> Session {
        Session { token, secure }
    }

    /// Whether `presented` is the API token (in constant time, as the API checks it).
    pub fn accepts(&self, presented: &str) -> bool {
        self.token.matches(presented)
    }

    /// Whether the request carries a cookie holding the token.
    fn signed_in(&self, headers: &HeaderMap) -> bool {
        cookie_token(headers).is_some_and(|t| self.accepts(&t))
    }

    /// `Set-Cookie` for a session holding `token`, hex-encoded so any token is a valid
    /// cookie value.
    pub fn cookie(&self, token: &str) -> HeaderValue {
        self.header(&format!("{COOKIE}={}", hex::encode(token)))
    }

    /// `Set-Cookie` that ends the session.
    pub fn cleared(&self) -> HeaderValue {
        self.header(&format!("{COOKIE}=; Max-Age=0"))
    }

    fn header(&self, value: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{value}; HttpOnly; SameSite=Strict; Path=/{secure}"
        ))
        .expect("a hex cookie is a valid header value")
    }
}

/// The token in the request's `clrk_token` cookie, if one decodes.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| hex::decode(value).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// `?token=` of a page's URL, if any.
fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    form_value(query, "token")
}

/// One field of an `application/x-www-form-urlencoded` string.
pub fn form_value(encoded: &str, field: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(encoded)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v)
}

/// In front of pages: a valid `?token=` sets the cookie and redirects to the same page
/// without it (so the token leaves the address bar and history); a wrong one, or no cookie,
/// redirects to the login form (303).
pub async fn require_page(
    State(session): State<Session>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if let Some(token) = query_token(&request) {
        if !session.accepts(&token) {
            return Redirect::to("/ui/login?failed=1").into_response();
        }
        let mut response = Redirect::to(&path).into_response();
        response
            .headers_mut()
            .insert(header::SET_COOKIE, session.cookie(&token));
        return response;
    }
    if session.signed_in(request.headers()) {
        return next.run(request).await;
    }
    Redirect::to(&login_url(&path)).into_response()
}

/// In front of data endpoints: 401 without a cookie holding the token.
pub async fn require_data(
    State(session): State<Session>,
    request: Request,
    next: Next,
) -> Response {
    if session.signed_in(request.headers()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(clrk_wire::ErrorBody {
            error: "not signed in to the console: open /ui/login and give the API token".into(),
        }),
    )
        .into_response()
}

/// The login form, to come back to `path` after.
fn login_url(path: &str) -> String {
    let next: String = url_encode(path);
    format!("/ui/login?next={next}")
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after login: only a console path, so the form cannot send anyone elsewhere.
pub fn local_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with(super::PREFIX) && !n.contains("//") && !n.contains('\\') => n,
        _ => super::PREFIX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(Token::new("s3cret; =x".into()), false)
    }

    #[test]
    fn the_cookie_round_trips_any_token_and_is_http_only_and_strict() {
        let s = session();
        let set = s.cookie("s3cret; =x");
        let set = set.to_str().unwrap();
        assert!(
            set.ends_with("; HttpOnly; SameSite=Strict; Path=/"),
            "{set}"
        );
        let value = set.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {value}")).unwrap(),
        );
        assert!(s.signed_in(&headers));
        let secure = Session::new(Token::new("t".into()), true).cookie("t");
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn a_wrong_missing_or_malformed_cookie_is_not_signed_in() {
        let s = session();
        for cookie in [
            "",
            "clrk_token=",
            "clrk_token=zz",
            "clrk_token=73",
            "clrk_tokenx=7333637265743b203d78",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            assert!(!s.signed_in(&headers), "{cookie}");
        }
        assert!(!s.signed_in(&HeaderMap::new()));
    }

    #[test]
    fn login_goes_back_only_to_console_paths() {
        assert_eq!(local_next(Some("/ui/pools")), "/ui/pools");
        assert_eq!(local_next(Some("https://evil.example/")), "/ui/");
        assert_eq!(local_next(Some("/ui//evil.example")), "/ui/");
        assert_eq!(local_next(Some("/v1/agents")), "/ui/");
        assert_eq!(local_next(None), "/ui/");
        assert_eq!(
            login_url("/ui/agents/a b"),
            "/ui/login?next=/ui/agents/a%20b"
        );
    }

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(
            form_value("next=%2Fui%2F&token=a%2Bb+c", "token").as_deref(),
            Some("a+b c")
        );
        assert_eq!(form_value("next=x", "token"), None);
    }
}
