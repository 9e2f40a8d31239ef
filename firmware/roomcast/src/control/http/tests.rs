//! Routing through [`Req`], without sockets: status codes, the admin and
//! viewer gates, CSRF, body limits, LL-HLS query errors.

use super::*;
use crate::base::clock::{SharedClock, SimClock};
use crate::config::Config;
use crate::control::auth::{COOKIE, VIEWER_COOKIE};
use std::path::PathBuf;

/// An app whose pipeline never starts, in a fresh data directory.
fn app(tag: &str) -> (App, PathBuf) {
    let dir = std::env::temp_dir().join(format!("roomcast-http-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = Config::default();
    c.audio.source = "none".into();
    c.mdns = true;
    let cfg = c.validate().unwrap();
    let clock: SharedClock = Arc::new(SimClock::new(1_795_580_100_000));
    let app = App::idle(clock, cfg, &dir, dir.join("config.toml"));
    // What the daemon's start does: a setup code in the data directory.
    crate::control::auth::prepare_setup_code(&dir, &dir.join("no-boot-partition")).unwrap();
    (app, dir)
}

fn reply(app: &App, req: &Req) -> Reply {
    match handle(app, req) {
        Routed::Reply(r) => r,
        Routed::Parked(r, w) => panic!("parked for rendition {r}: {w:?}"),
    }
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn with_body(method: Method, url: &str, body: &str) -> Req {
    let mut r = Req::new(method, url);
    r.body = Ok(body.as_bytes().to_vec());
    r
}

/// The setup code the daemon keeps in its data directory.
fn setup_code(app: &App) -> String {
    let dir = app.config_path.parent().unwrap();
    crate::control::auth::read_setup_code(dir).expect("a setup code in the data directory")
}

/// `POST /api/setup` with `password` and `code`.
fn setup_req(password: &str, code: Option<&str>) -> Req {
    let mut body = json!({ "password": password });
    if let Some(c) = code {
        body["setup_code"] = c.into();
    }
    with_body(Method::Post, "/api/setup", &body.to_string())
}

/// Sets the admin password with the setup code from the data directory;
/// returns the session cookie and CSRF token.
fn set_up(app: &App) -> (String, String) {
    let r = reply(app, &setup_req("correct horse", Some(&setup_code(app))));
    assert_eq!(r.status, 200, "{:?}", json_of(&r));
    let cookie = r.header_value("Set-Cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let sid = cookie.split(';').next().unwrap().to_string();
    (sid, json_of(&r)["csrf"].as_str().unwrap().to_string())
}

fn as_admin(mut req: Req, sid: &str, csrf: Option<&str>) -> Req {
    req.headers.push(("Cookie".into(), sid.into()));
    if let Some(t) = csrf {
        req.headers.push(("x-csrf-token".into(), t.into()));
    }
    req
}

#[test]
fn page_is_open_and_unknown_paths_are_404() {
    let (app, _) = app("page");
    let r = reply(&app, &Req::new(Method::Get, "/"));
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/html"));
    for (method, path, status) in [
        (Method::Get, "/nope", 404),
        (Method::Post, "/", 405),
        (Method::Delete, "/hls/seg1.ts", 405),
    ] {
        let r = reply(&app, &Req::new(method.clone(), path));
        assert_eq!(r.status, status, "{method:?} {path}");
    }
}

#[test]
fn first_start_needs_setup_and_the_api_needs_the_admin() {
    let (app, _) = app("gate");
    let r = reply(&app, &Req::new(Method::Get, "/api/status"));
    assert_eq!(r.status, 401);
    assert_eq!(json_of(&r)["setup_needed"], true);
    assert_eq!(reply(&app, &Req::new(Method::Get, "/metrics")).status, 401);
    let short = setup_req("x", Some(&setup_code(&app)));
    assert_eq!(reply(&app, &short).status, 400);
    let (sid, csrf) = set_up(&app);
    let again = setup_req("another one", Some("2222-2222-2222-2222"));
    assert_eq!(reply(&app, &again).status, 400, "already set");
    let r = reply(
        &app,
        &as_admin(Req::new(Method::Get, "/api/status"), &sid, None),
    );
    assert_eq!(r.status, 200);
    assert!(json_of(&r)["outputs"].is_array());
    let s = reply(
        &app,
        &as_admin(Req::new(Method::Get, "/api/session"), &sid, None),
    );
    assert_eq!(json_of(&s)["csrf"], csrf.as_str());
    // Not logged in any more after logout.
    let out = as_admin(Req::new(Method::Post, "/api/logout"), &sid, Some(&csrf));
    assert_eq!(reply(&app, &out).status, 200);
    let r = reply(
        &app,
        &as_admin(Req::new(Method::Get, "/api/status"), &sid, None),
    );
    assert_eq!(r.status, 401);
    assert_eq!(json_of(&r)["setup_needed"], false);
}

#[test]
fn the_first_password_needs_the_setup_code() {
    let (app, dir) = app("setup-code");
    let session = |app: &App| json_of(&reply(app, &Req::new(Method::Get, "/api/session")));
    let s = session(&app);
    assert_eq!(
        (s["setup_needed"].clone(), s["setup_code_needed"].clone()),
        (json!(true), json!(true))
    );
    let code = setup_code(&app);
    let code_file = dir.join(crate::control::auth::SETUP_CODE_FILE);
    assert!(code_file.exists());
    // Without the code: 401 saying where to find it.
    for missing in [
        setup_req("correct horse", None),
        setup_req("correct horse", Some(" ")),
    ] {
        let r = reply(&app, &missing);
        assert_eq!(r.status, 401);
        let e = json_of(&r);
        assert_eq!(e["setup_code_needed"], true);
        let msg = e["error"].as_str().unwrap();
        assert!(
            msg.contains("setup code") && msg.contains("roomcast-host flash"),
            "{msg}"
        );
    }
    // A wrong code: 401, and after three of them the next try must wait,
    // even with the right code.
    let wrong = if code.starts_with('2') {
        "3333-3333-3333-3333"
    } else {
        "2222-2222-2222-2222"
    };
    let statuses: Vec<u16> = (0..4)
        .map(|_| reply(&app, &setup_req("correct horse", Some(wrong))).status)
        .collect();
    assert_eq!(statuses, [401, 401, 401, 429]);
    let r = reply(&app, &setup_req("correct horse", Some(&code)));
    assert_eq!(r.status, 429);
    assert!(r.header_value("Retry-After").is_some());
    assert_eq!(session(&app)["setup_needed"], true, "nothing set");
    // Another address is not held up, and the code still works: 200 with
    // the session, and the code is gone.
    let mut right = setup_req("correct horse", Some(&code.to_lowercase()));
    right.remote = "10.0.0.9".parse().unwrap();
    let r = reply(&app, &right);
    assert_eq!(r.status, 200, "{:?}", json_of(&r));
    assert!(r.header_value("Set-Cookie").is_some());
    assert!(!code_file.exists(), "the setup code is deleted once used");
    let s = session(&app);
    assert_eq!(
        (s["setup_needed"].clone(), s["setup_code_needed"].clone()),
        (json!(false), json!(false))
    );
    // Used: the same code sets nothing again.
    let mut again = setup_req("another password", Some(&code));
    again.remote = "10.0.0.9".parse().unwrap();
    assert_eq!(reply(&app, &again).status, 400);
    // A reset (the board's button) issues a fresh code, printed and stored.
    let fresh = app.auth.reset().unwrap();
    assert_ne!(fresh, code);
    assert_eq!(setup_code(&app), fresh);
    assert_eq!(session(&app)["setup_code_needed"], true);
    assert_eq!(reply(&app, &right).status, 401, "the old code is dead");
    let mut new = setup_req("correct horse", Some(&fresh));
    new.remote = "10.0.0.9".parse().unwrap();
    assert_eq!(reply(&app, &new).status, 200);
}

#[test]
fn changes_need_the_csrf_token_and_bodies_are_bounded() {
    let (app, dir) = app("csrf");
    let (sid, csrf) = set_up(&app);
    let put = |body: &str, token: Option<&str>| {
        reply(
            &app,
            &as_admin(with_body(Method::Put, "/api/config", body), &sid, token),
        )
    };
    assert_eq!(put(r#"{"mdns":false}"#, None).status, 403);
    assert_eq!(put(r#"{"mdns":false}"#, Some("wrong")).status, 403);
    assert!(!dir.join("config.toml").exists(), "nothing saved");
    assert_eq!(put(r#"{"mdns":false}"#, Some(&csrf)).status, 200);
    assert!(dir.join("config.toml").exists());
    assert!(!lock(&app.config).get().mdns);
    let bad = put(r#"{"video":{"fps":0}}"#, Some(&csrf));
    assert_eq!(bad.status, 400);
    assert_eq!(json_of(&bad)["field"], "video.fps");
    assert_eq!(put("{not json", Some(&csrf)).status, 400);
    let mut big = as_admin(Req::new(Method::Put, "/api/config"), &sid, Some(&csrf));
    big.body = Err(BodyError::TooLarge);
    assert_eq!(reply(&app, &big).status, 413);
    let del = as_admin(Req::new(Method::Delete, "/api/config"), &sid, Some(&csrf));
    let r = reply(&app, &del);
    assert_eq!((r.status, r.header_value("Allow")), (405, Some("GET, PUT")));
}

#[test]
fn api_tokens_work_without_cookie_or_csrf() {
    let (app, _) = app("token");
    let (sid, csrf) = set_up(&app);
    let r = reply(
        &app,
        &as_admin(Req::new(Method::Post, "/api/token"), &sid, Some(&csrf)),
    );
    let token = json_of(&r)["token"].as_str().unwrap().to_string();
    let mut put = with_body(Method::Put, "/api/config", r#"{"mdns":false}"#);
    put.headers
        .push(("Authorization".into(), format!("Bearer {token}")));
    assert_eq!(reply(&app, &put).status, 200);
    let mut wrong = Req::new(Method::Get, "/api/status");
    wrong
        .headers
        .push(("Authorization".into(), "Bearer nope".into()));
    assert_eq!(reply(&app, &wrong).status, 401);
}

#[test]
fn wrong_passwords_are_refused_then_slowed_down() {
    let (app, _) = app("slow");
    set_up(&app);
    let statuses: Vec<u16> = (0..10)
        .map(|_| {
            let r = with_body(Method::Post, "/api/login", r#"{"password":"wrong guess"}"#);
            reply(&app, &r).status
        })
        .collect();
    assert_eq!(statuses[0], 401);
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[test]
fn ll_hls_queries_are_checked_before_parking() {
    let (app, _) = app("llq");
    for q in [
        "_HLS_part=1",
        "_HLS_msn=abc",
        "_HLS_msn=1&_HLS_part=99999999999",
    ] {
        let r = reply(
            &app,
            &Req::new(Method::Get, &format!("/hls/r0/index.m3u8?{q}")),
        );
        assert_eq!(r.status, 400, "{q}");
    }
    let parked = handle(
        &app,
        &Req::new(Method::Get, "/hls/r0/index.m3u8?_HLS_msn=5&_HLS_part=2"),
    );
    assert!(matches!(
        parked,
        Routed::Parked(
            0,
            Want::Playlist {
                msn: Some(5),
                part: Some(2),
                skip: false
            }
        )
    ));
    let file = handle(&app, &Req::new(Method::Get, "/hls/r1/part12.3.m4s"));
    assert!(matches!(file, Routed::Parked(1, Want::File(ref n)) if n == "part12.3.m4s"));
    // Not a rendition directory, or a file name with a path in it.
    for bad in [
        "/hls/rx/part1.1.m4s",
        "/hls/r123/part1.1.m4s",
        "/hls/r0/a/part1.1.m4s",
        // Keys: only digits that fit a u64, and only while encryption is on.
        "/hls/keys/1.key",
        "/hls/keys/.key",
        "/hls/keys/abc.key",
        "/hls/keys/-1.key",
        "/hls/keys/123456789012345678901234567890.key",
        "/hls/keys/1.key/../../api/config",
    ] {
        assert_eq!(
            reply(&app, &Req::new(Method::Get, bad)).status,
            404,
            "{bad}"
        );
    }
    // The TS flavour answers at once (404: no such segment yet).
    assert_eq!(
        reply(&app, &Req::new(Method::Get, "/hls/ts/r0/seg1.ts")).status,
        404
    );
}

#[test]
fn viewer_password_closes_the_stream_but_not_the_page() {
    let (app, _) = app("viewer");
    let (sid, csrf) = set_up(&app);
    let set = with_body(
        Method::Put,
        "/api/viewer-password",
        r#"{"password":"viewers only"}"#,
    );
    assert_eq!(reply(&app, &as_admin(set, &sid, Some(&csrf))).status, 200);
    let r = reply(&app, &Req::new(Method::Get, "/hls/index.m3u8"));
    assert_eq!(r.status, 401);
    assert_eq!(json_of(&r)["viewer_login"], true);
    assert_eq!(reply(&app, &Req::new(Method::Get, "/")).status, 200);
    // The admin passes; a viewer session opens the stream and nothing else.
    let admin = handle(
        &app,
        &as_admin(Req::new(Method::Get, "/hls/r0/index.m3u8"), &sid, None),
    );
    assert!(matches!(admin, Routed::Parked(0, _)));
    let login = with_body(
        Method::Post,
        "/api/viewer-login",
        r#"{"password":"viewers only"}"#,
    );
    let r = reply(&app, &login);
    assert_eq!(r.status, 200);
    let cookie = r.header_value("Set-Cookie").unwrap();
    assert!(cookie.starts_with(VIEWER_COOKIE));
    let viewer = cookie.split(';').next().unwrap().to_string();
    let mut play = Req::new(Method::Get, "/hls/r0/index.m3u8");
    play.headers.push(("Cookie".into(), viewer.clone()));
    assert!(matches!(handle(&app, &play), Routed::Parked(0, _)));
    let mut api = Req::new(Method::Get, "/api/status");
    api.headers.push(("Cookie".into(), viewer));
    assert_eq!(reply(&app, &api).status, 401);
    assert!(!COOKIE.is_empty());
}
