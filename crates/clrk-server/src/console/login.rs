//! The login form (it takes the API token and sets the session cookie) and logout.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::layout::shell;
use super::session::{Session, local_next};

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// The form; `failed` says the last token given was wrong.
pub async fn form(Query(q): Query<LoginQuery>) -> Response {
    let status = if q.failed.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    login_page(status, local_next(q.next.as_deref()), q.failed.is_some())
}

fn login_page(status: StatusCode, next: &str, failed: bool) -> Response {
    let body = html! {
        @if failed {
            p.notice #login-failed { "That is not the API token." }
        }
        form.login method="post" action="/ui/login" {
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            input type="hidden" name="next" value=(next);
            button #sign-in type="submit" { "Sign in" }
        }
        p.muted {
            "The token is in " code { "$CLRK_DIR/dev.json" } " for " code { "clrk dev" }
            ", or the server's token file for " code { "clrk server" } "."
        }
    };
    (status, Html(shell("Sign in", false, body).into_string())).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Checks the token: the right one sets the cookie and goes on to `next`, a wrong one shows
/// the form again with 401.
pub async fn submit(State(session): State<Session>, Form(login): Form<LoginForm>) -> Response {
    let next = local_next(login.next.as_deref());
    if !session.accepts(login.token.trim()) {
        return login_page(StatusCode::UNAUTHORIZED, next, true);
    }
    let mut response = Redirect::to(next).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session.cookie(login.token.trim()));
    response
}

/// Clears the cookie and shows the form.
pub async fn logout(State(session): State<Session>) -> Response {
    let mut response = Redirect::to("/ui/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session.cleared());
    response
}
