//! Who is asking: first-start setup, admin login and logout, the viewer
//! login, and the admin gate every other `/api/` route is behind (a
//! session cookie with its CSRF token on changes, or an API token).

use super::{Method, Reply, Req};
use crate::control::app::App;
use crate::control::auth::{self, Access, AuthError};
use serde_json::json;

/// Sessions last 12 hours.
const COOKIE_ATTRS: &str = "HttpOnly; SameSite=Strict; Path=/; Max-Age=43200";

/// `; Secure` over HTTPS: the browser then never sends the cookie in clear.
fn secure(req: &Req) -> &'static str {
    if req.secure {
        "; Secure"
    } else {
        ""
    }
}

/// The routes open without a session; `None` for the others.
pub(super) fn open_route(app: &App, req: &Req) -> Option<Reply> {
    let now = app.clock.monotonic_ns();
    Some(match (&req.method, req.path()) {
        (Method::Get, "/api/session") => {
            let access = app.auth.check(req.cookie(auth::COOKIE), req.bearer(), now);
            Reply::json(
                200,
                &json!({
                    "setup_needed": app.auth.setup_needed(),
                    // Setting the first password takes the one-time setup code.
                    "setup_code_needed": app.auth.setup_needed(),
                    "logged_in": access.is_ok(),
                    "viewer_password": app.auth.viewer_password_set(),
                    "csrf": match access { Ok(Access::Session { csrf }) => Some(csrf), _ => None },
                }),
            )
        }
        (Method::Post, "/api/viewer-login") => {
            let password = match req.body_json() {
                Ok(v) => v["password"].as_str().unwrap_or("").to_string(),
                Err(r) => return Some(r),
            };
            match app.auth.viewer_login(req.remote, &password, now) {
                Ok(id) => Reply::ok().header(
                    "Set-Cookie",
                    format!(
                        "{}={id}; {COOKIE_ATTRS}{}",
                        auth::VIEWER_COOKIE,
                        secure(req)
                    ),
                ),
                Err(e) => e.into(),
            }
        }
        (Method::Post, p @ ("/api/setup" | "/api/login")) => {
            let (password, code) = match req.body_json() {
                Ok(v) => (
                    v["password"].as_str().unwrap_or("").to_string(),
                    v["setup_code"].as_str().unwrap_or("").to_string(),
                ),
                Err(r) => return Some(r),
            };
            let result = if p == "/api/setup" {
                app.auth.setup(req.remote, &password, &code, now)
            } else {
                app.auth.login(req.remote, &password, now)
            };
            match result {
                Ok((sid, csrf)) => Reply::json(200, &json!({ "ok": true, "csrf": csrf })).header(
                    "Set-Cookie",
                    format!("{}={sid}; {COOKIE_ATTRS}{}", auth::COOKIE, secure(req)),
                ),
                Err(e @ (AuthError::SetupCodeMissing | AuthError::SetupCodeWrong)) => Reply::json(
                    401,
                    &json!({ "error": e.to_string(), "setup_code_needed": true }),
                ),
                Err(e) => e.into(),
            }
        }
        _ => return None,
    })
}

/// The admin gate: the admin's session or an API token, and on anything
/// but GET/HEAD with a session, its CSRF token.
pub(super) fn admin_gate(app: &App, req: &Req) -> Result<Access, Reply> {
    let now = app.clock.monotonic_ns();
    let access = app
        .auth
        .check(req.cookie(auth::COOKIE), req.bearer(), now)
        .map_err(|e| {
            Reply::json(
                401,
                &json!({ "error": e.to_string(), "setup_needed": e == AuthError::SetupNeeded }),
            )
        })?;
    if !req.method.is_read() {
        if let Access::Session { csrf: want } = &access {
            if req.header("X-CSRF-Token") != Some(want.as_str()) {
                return Err(AuthError::Csrf.into());
            }
        }
    }
    Ok(access)
}

/// `POST /api/logout` (behind the gate).
pub(super) fn logout(app: &App, req: &Req) -> Reply {
    if let Some(sid) = req.cookie(auth::COOKIE) {
        app.auth.logout(sid);
    }
    Reply::ok().header(
        "Set-Cookie",
        format!(
            "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
            auth::COOKIE
        ),
    )
}
