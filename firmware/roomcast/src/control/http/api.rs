//! `/api/…` and `/metrics`, behind the admin gate ([`super::session`]):
//! status, configuration (with export and import), devices, the viewer
//! password, API tokens.

use super::{session, Method, Reply, Req};
use crate::control::app::{App, ApplyError};
use serde_json::{json, Value};

pub(super) fn route(app: &App, req: &Req) -> Reply {
    if let Some(reply) = session::open_route(app, req) {
        return reply;
    }
    if let Err(refused) = session::admin_gate(app, req) {
        return refused;
    }
    let path = req.path();
    match (&req.method, path) {
        (Method::Post, "/api/logout") => session::logout(app, req),
        (Method::Get, "/api/status") => Reply::json(200, &app.status_json()),
        (Method::Get, "/api/config") => Reply::json(200, &app.config_json()),
        (Method::Put, "/api/config") => put_config(app, req),
        (Method::Get, "/api/config/export") => export(app, req),
        (Method::Put, "/api/config/import") => import(app, req),
        (Method::Get, "/api/devices") => Reply::json(
            200,
            &json!({
                "devices": app.pipeline.devices(),
                "audio": app.pipeline.audio_devices(),
            }),
        ),
        (Method::Put, "/api/viewer-password") => viewer_password(app, req),
        (Method::Get, "/api/tls") => Reply::json(200, &app.https_json()),
        (Method::Put, "/api/tls") => upload_certificate(app, req),
        (Method::Delete, "/api/tls") => match &app.tls {
            Some(store) => match store.reset(&crate::control::tls::default_names()) {
                Ok(_) => Reply::json(200, &app.https_json()),
                Err(e) => Reply::error(500, &e.to_string()),
            },
            None => https_off(),
        },
        (Method::Post, "/api/token") => match app.auth.new_api_token() {
            Ok(token) => Reply::json(200, &json!({ "token": token })),
            Err(e) => e.into(),
        },
        (Method::Get, "/metrics") => Reply::new(
            200,
            "text/plain; version=0.0.4",
            app.metrics_text().into_bytes(),
        ),
        (_, "/api/config") => {
            Reply::error(405, "use GET or PUT on /api/config").header("Allow", "GET, PUT")
        }
        (Method::Get | Method::Head, p) => Reply::error(404, &format!("no such page: {p}")),
        (m, p) => Reply::not_allowed(m, p),
    }
}

fn put_config(app: &App, req: &Req) -> Reply {
    req.body_json()
        .map(|patch| done(app.put_config(patch)))
        .unwrap_or_else(|refused| refused)
}

/// `{"ok": true}`, or why not.
fn done(result: Result<(), ApplyError>) -> Reply {
    result.map_or_else(Reply::from, |()| Reply::ok())
}

fn export(app: &App, req: &Req) -> Reply {
    let secrets = req.query().split('&').any(|p| p == "secrets=1");
    match app.export_config(secrets) {
        Ok(text) => Reply::new(200, "application/toml", text.into_bytes())
            .header(
                "Content-Disposition",
                "attachment; filename=\"roomcast-config.toml\"",
            )
            .header("Cache-Control", "no-store"),
        Err(e) => Reply::error(500, &e.to_string()),
    }
}

fn import(app: &App, req: &Req) -> Reply {
    let text = match req.body_text() {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    match app.import_config(text) {
        Err(e @ ApplyError::Shape(_)) => {
            Reply::error(400, &format!("not a roomcast configuration: {e}"))
        }
        result => done(result),
    }
}

fn viewer_password(app: &App, req: &Req) -> Reply {
    let v = match req.body_json() {
        Ok(v) => v,
        Err(r) => return r,
    };
    let password = match v.get("password") {
        Some(Value::String(p)) => Some(p.as_str()),
        Some(Value::Null) => None,
        _ => {
            return Reply::error(
                400,
                "send {\"password\": \"...\"} to set the viewer password or {\"password\": null} to open the stream",
            )
        }
    };
    match app.auth.set_viewer_password(password) {
        Ok(()) => Reply::json(
            200,
            &json!({ "ok": true, "viewer_password": password.is_some() }),
        ),
        Err(e) => e.into(),
    }
}

fn https_off() -> Reply {
    Reply::error(409, "HTTPS is off (config https.port = 0 or --https off)")
}

/// `PUT /api/tls` `{"cert": PEM chain, "key": PEM private key}`: checked
/// (PEM, the key is the certificate's) and presented from the next HTTPS
/// connection on; a refused one changes nothing.
fn upload_certificate(app: &App, req: &Req) -> Reply {
    let Some(store) = &app.tls else {
        return https_off();
    };
    let v = match req.body_json() {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (Some(cert), Some(key)) = (v["cert"].as_str(), v["key"].as_str()) else {
        return Reply::error(400, "send {\"cert\": \"-----BEGIN CERTIFICATE-----…\", \"key\": \"-----BEGIN PRIVATE KEY-----…\"}");
    };
    match store.install(cert.as_bytes(), key.as_bytes()) {
        Ok(_) => Reply::json(200, &app.https_json()),
        Err(e @ crate::control::tls::TlsError::Store(_)) => Reply::error(500, &e.to_string()),
        Err(e) => Reply::error(400, &e.to_string()),
    }
}
