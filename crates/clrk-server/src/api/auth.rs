//! Bearer-token check in front of every control API route.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The API token.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: String) -> Token {
        Token(token.into())
    }

    /// Compares in constant time so the token cannot be guessed byte by byte.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Refuses a request without the right `Authorization: Bearer` token with 401.
pub async fn require_token(State(token): State<Token>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if token.matches(p.trim()) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(clrk_wire::ErrorBody {
                error: "missing or wrong API token: send Authorization: Bearer <token> (the token is in $CLRK_DIR/dev.json)".into(),
            }),
        )
            .into_response(),
    }
}
