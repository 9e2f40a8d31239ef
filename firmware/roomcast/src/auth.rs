//! Who may see and change the box's settings.
//!
//! Viewers (the stream under `/hls/`, the page's static files) need nothing;
//! everything else needs the admin. The admin password is set on first start
//! through the page and stored as an argon2id hash (`DATA_DIR/admin.pw`);
//! until then no setting can be read or changed. Afterwards a request needs a
//! session (an HttpOnly, SameSite=Strict cookie from logging in) or an API
//! token (`Authorization: Bearer`, tokens listed one per line in
//! `DATA_DIR/api-tokens`, e.g. for Prometheus or provisioning scripts).
//! Requests that change state with a session cookie must also carry the
//! session's CSRF token in `X-CSRF-Token`. Failed logins are slowed down per
//! client address. `roomcast --reset-password` deletes the password and the
//! tokens.

use crate::bus::lock;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// File holding the admin password's argon2 hash (PHC string).
pub const PASSWORD_FILE: &str = "admin.pw";
/// File listing API tokens, one per line.
pub const TOKENS_FILE: &str = "api-tokens";
/// Name of the session cookie.
pub const COOKIE: &str = "roomcast_session";
/// Sessions last a working day without activity checks.
const SESSION_NS: u64 = 12 * 3600 * 1_000_000_000;
/// Wrong passwords allowed before each further attempt must wait.
const FREE_FAILURES: u32 = 3;
/// The longest wait imposed between attempts.
const MAX_BACKOFF_NS: u64 = 60 * 1_000_000_000;
/// Shortest admin password accepted.
pub const MIN_PASSWORD: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("set the admin password first")]
    SetupNeeded,
    #[error("the admin password is already set; log in instead")]
    AlreadySet,
    #[error("the password must be at least {MIN_PASSWORD} characters")]
    TooShort,
    #[error("wrong password")]
    WrongPassword,
    #[error("too many wrong passwords; try again in {0} s")]
    SlowDown(u64),
    #[error("log in first")]
    NotLoggedIn,
    #[error("missing or wrong X-CSRF-Token header")]
    Csrf,
    #[error("cannot store the password: {0}")]
    Store(String),
}

/// A logged-in browser.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires_ns: u64,
    /// The password hash the session was opened under: a session never
    /// outlives its password (`--reset-password` on a running box, a new
    /// password set afterwards).
    password: String,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    /// No attempt is checked before this time.
    next_allowed_ns: u64,
}

/// What a request proved about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Logged in through the page; state changes need this CSRF token.
    Session { csrf: String },
    /// An API token: no CSRF (it is not sent by browsers on their own).
    Token,
}

pub struct Auth {
    dir: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl Auth {
    pub fn new(data_dir: &Path) -> Self {
        Auth {
            dir: data_dir.to_path_buf(),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn password_hash(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join(PASSWORD_FILE))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// True until the admin password has been set.
    pub fn setup_needed(&self) -> bool {
        self.password_hash().is_none()
    }

    /// First start: sets the password (refused once one exists) and logs in.
    pub fn setup(&self, password: &str, now_ns: u64) -> Result<(String, String), AuthError> {
        if !self.setup_needed() {
            return Err(AuthError::AlreadySet);
        }
        if password.chars().count() < MIN_PASSWORD {
            return Err(AuthError::TooShort);
        }
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|e| AuthError::Store(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Store(e.to_string()))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AuthError::Store(e.to_string()))?
            .to_string();
        write_private(&self.dir.join(PASSWORD_FILE), &hash)
            .map_err(|e| AuthError::Store(e.to_string()))?;
        Ok(self.new_session(now_ns, hash))
    }

    /// Checks the password; on success returns (session id, CSRF token).
    pub fn login(
        &self,
        from: IpAddr,
        password: &str,
        now_ns: u64,
    ) -> Result<(String, String), AuthError> {
        let Some(hash) = self.password_hash() else {
            return Err(AuthError::SetupNeeded);
        };
        {
            let f = lock(&self.failures);
            if let Some(f) = f.get(&from) {
                if now_ns < f.next_allowed_ns {
                    return Err(AuthError::SlowDown(
                        (f.next_allowed_ns - now_ns).div_ceil(1_000_000_000),
                    ));
                }
            }
        }
        let ok = PasswordHash::new(&hash).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        let mut failures = lock(&self.failures);
        if !ok {
            let f = failures.entry(from).or_default();
            f.count += 1;
            if f.count >= FREE_FAILURES {
                // 1 s, 2 s, 4 s … up to a minute.
                let wait =
                    (1_000_000_000u64 << (f.count - FREE_FAILURES).min(6)).min(MAX_BACKOFF_NS);
                f.next_allowed_ns = now_ns + wait;
            }
            return Err(AuthError::WrongPassword);
        }
        failures.remove(&from);
        drop(failures);
        Ok(self.new_session(now_ns, hash))
    }

    pub fn logout(&self, session: &str) {
        lock(&self.sessions).remove(session);
    }

    fn new_session(&self, now_ns: u64, password: String) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let mut s = lock(&self.sessions);
        s.retain(|_, v| v.expires_ns > now_ns);
        s.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires_ns: now_ns + SESSION_NS,
                password,
            },
        );
        (id, csrf)
    }

    /// Who is asking: from the session cookie or the bearer token.
    pub fn check(
        &self,
        cookie: Option<&str>,
        bearer: Option<&str>,
        now_ns: u64,
    ) -> Result<Access, AuthError> {
        if let Some(token) = bearer {
            if self.token_valid(token) {
                return Ok(Access::Token);
            }
        }
        let Some(password) = self.password_hash() else {
            return Err(AuthError::SetupNeeded);
        };
        let id = cookie.ok_or(AuthError::NotLoggedIn)?;
        let s = lock(&self.sessions);
        match s.get(id) {
            Some(session) if session.expires_ns > now_ns && session.password == password => {
                Ok(Access::Session {
                    csrf: session.csrf.clone(),
                })
            }
            _ => Err(AuthError::NotLoggedIn),
        }
    }

    fn token_valid(&self, token: &str) -> bool {
        let Ok(list) = std::fs::read_to_string(self.dir.join(TOKENS_FILE)) else {
            return false;
        };
        // Short tokens would be guessable; ignore them.
        token.len() >= 16
            && list
                .lines()
                .map(str::trim)
                .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    }

    /// [`reset`] for the running daemon (the board's reset button): also
    /// forgets every session, so none made before the reset becomes valid
    /// again once a new password is set.
    pub fn reset(&self) -> std::io::Result<()> {
        lock(&self.sessions).clear();
        lock(&self.failures).clear();
        reset(&self.dir)
    }

    /// Creates an API token, stores it, and returns it (shown once).
    pub fn new_api_token(&self) -> Result<String, AuthError> {
        let token = random_token();
        let path = self.dir.join(TOKENS_FILE);
        let mut list = std::fs::read_to_string(&path).unwrap_or_default();
        if !list.is_empty() && !list.ends_with('\n') {
            list.push('\n');
        }
        list.push_str(&token);
        list.push('\n');
        write_private(&path, &list).map_err(|e| AuthError::Store(e.to_string()))?;
        Ok(token)
    }
}

/// Removes the password and API tokens (`roomcast --reset-password`, or the
/// board's button): the next visitor to the page sets a new password.
pub fn reset(data_dir: &Path) -> std::io::Result<()> {
    for f in [PASSWORD_FILE, TOKENS_FILE] {
        match std::fs::remove_file(data_dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// 32 random bytes as hex.
fn random_token() -> String {
    let mut b = [0u8; 32];
    // The OS random source failing is not recoverable in any useful way; a
    // predictable token would be worse than stopping.
    getrandom::getrandom(&mut b).expect("the OS random number generator failed");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes a secret atomically, readable by the owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The value of cookie `name` in a `Cookie:` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("roomcast-auth-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn nothing_is_open_before_setup_and_setup_happens_once() {
        let d = dir("setup");
        let a = Auth::new(&d);
        assert!(a.setup_needed());
        assert_eq!(a.check(None, None, 0), Err(AuthError::SetupNeeded));
        assert_eq!(a.login(IP, "whatever1", 0), Err(AuthError::SetupNeeded));
        assert_eq!(a.setup("short", 0), Err(AuthError::TooShort));
        let (sid, csrf) = a.setup("correct horse", 0).unwrap();
        assert_eq!(a.check(Some(&sid), None, 1), Ok(Access::Session { csrf }));
        assert_eq!(a.setup("another one", 0), Err(AuthError::AlreadySet));
        let stored = std::fs::read_to_string(d.join(PASSWORD_FILE)).unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        reset(&d).unwrap();
        assert!(a.setup_needed());
        // A session from before a reset does not come back with a new password.
        a.setup("a new password", 2).unwrap();
        assert_eq!(a.check(Some(&sid), None, 3), Err(AuthError::NotLoggedIn));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn login_logout_expiry_and_wrong_passwords_slow_down() {
        let d = dir("login");
        let a = Auth::new(&d);
        a.setup("correct horse", 0).unwrap();
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(a.login(IP, "nope", 0), Err(AuthError::WrongPassword));
        }
        // The third failure starts the back-off: 1 s, then 2 s …
        assert_eq!(a.login(IP, "nope", 0), Err(AuthError::WrongPassword));
        assert_eq!(
            a.login(IP, "correct horse", 500_000_000),
            Err(AuthError::SlowDown(1))
        );
        assert_eq!(
            a.login(IP, "nope", 1_000_000_000),
            Err(AuthError::WrongPassword)
        );
        assert_eq!(
            a.login(IP, "nope", 2_000_000_000),
            Err(AuthError::SlowDown(1))
        );
        // Another address is not affected.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        let (sid, _) = a.login(other, "correct horse", 2_000_000_000).unwrap();
        let (sid2, _) = a.login(IP, "correct horse", 3_000_000_000).unwrap();
        assert!(a.check(Some(&sid), None, 4).is_ok());
        a.logout(&sid);
        assert_eq!(a.check(Some(&sid), None, 5), Err(AuthError::NotLoggedIn));
        assert_eq!(
            a.check(Some(&sid2), None, SESSION_NS + 3_000_000_001),
            Err(AuthError::NotLoggedIn)
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn api_tokens_work_without_a_session() {
        let d = dir("token");
        let a = Auth::new(&d);
        let t = a.new_api_token().unwrap();
        assert_eq!(a.check(None, Some(&t), 0), Ok(Access::Token));
        assert_eq!(
            a.check(None, Some("0123456789abcdef-wrong"), 0),
            Err(AuthError::SetupNeeded)
        );
        a.setup("correct horse", 0).unwrap();
        assert_eq!(a.check(None, Some("short"), 0), Err(AuthError::NotLoggedIn));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(
            cookie_value("a=1; roomcast_session=abc; b=2", COOKIE),
            Some("abc")
        );
        assert_eq!(cookie_value("roomcast_sessionx=1", COOKIE), None);
    }
}
