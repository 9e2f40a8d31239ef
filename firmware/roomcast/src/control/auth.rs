//! Who may see and change the box's settings.
//!
//! Viewers (the stream under `/hls/`, the page's static files) need nothing
//! unless the admin sets a viewer password (argon2id, `DATA_DIR/viewer.pw`):
//! then `/hls/` needs the admin or a viewer session (its own HttpOnly,
//! SameSite=Strict cookie from `POST /api/viewer-login`; never a secret in
//! the URL). A viewer session unlocks the stream and nothing else.
//! Everything else needs the admin. The admin password is set on first start
//! through the page and stored as an argon2id hash (`DATA_DIR/admin.pw`);
//! until then no setting can be read or changed. Setting it needs the
//! one-time setup code (`DATA_DIR/setup-code`, see [`prepare_setup_code`]):
//! the installer has it from `roomcast-host image build`/`flash` (the SD
//! image's boot partition), or it is printed on the daemon's console; it is
//! deleted once the password is set. Afterwards a request needs a
//! session (an HttpOnly, SameSite=Strict cookie from logging in) or an API
//! token (`Authorization: Bearer`, tokens listed one per line in
//! `DATA_DIR/api-tokens`, e.g. for Prometheus or provisioning scripts).
//! Requests that change state with a session cookie must also carry the
//! session's CSRF token in `X-CSRF-Token`. Failed logins are slowed down per
//! client address, and wrong setup codes with them. `roomcast
//! --reset-password` (and the board's reset button) delete the password and
//! the tokens and issue a fresh setup code.

use crate::base::lock;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use roomcast_media::setup_code;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// File holding the admin password's argon2 hash (PHC string).
pub const PASSWORD_FILE: &str = "admin.pw";
/// File listing API tokens, one per line.
pub const TOKENS_FILE: &str = "api-tokens";
/// File holding the viewer password's argon2 hash; absent: the stream is open.
pub const VIEWER_PASSWORD_FILE: &str = "viewer.pw";
/// Name of the session cookie.
pub const COOKIE: &str = "roomcast_session";
/// Name of the viewer session cookie (the stream only).
pub const VIEWER_COOKIE: &str = "roomcast_viewer";
/// Sessions last a working day without activity checks.
const SESSION_NS: u64 = 12 * 3600 * 1_000_000_000;
/// Wrong passwords allowed before each further attempt must wait.
const FREE_FAILURES: u32 = 3;
/// The longest wait imposed between attempts.
const MAX_BACKOFF_NS: u64 = 60 * 1_000_000_000;
/// Shortest admin password accepted.
pub const MIN_PASSWORD: usize = 8;
/// File holding the one-time setup code while no admin password is set.
pub const SETUP_CODE_FILE: &str = "setup-code";
/// Where the SD image's FAT boot partition is mounted on the box:
/// `roomcast-host image build` leaves the installer's setup code there
/// (`roomcast_media::setup_code::FILE_NAME`).
pub const BOOT_DIR: &str = "/boot/firmware";
/// Environment variable naming another setup code file than the boot
/// partition's (tests).
pub const BOOT_SETUP_CODE_ENV: &str = "ROOMCAST_BOOT_SETUP_CODE";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("set the admin password first")]
    SetupNeeded,
    #[error("the admin password is already set; log in instead")]
    AlreadySet,
    #[error("the password must be at least {MIN_PASSWORD} characters")]
    TooShort,
    #[error("the setup code is needed to set the first admin password: `roomcast-host image build` and `roomcast-host flash` print it, it is in roomcast-setup-code.txt on the SD card's boot partition, and in the daemon's log")]
    SetupCodeMissing,
    #[error("wrong setup code")]
    SetupCodeWrong,
    #[error("wrong password")]
    WrongPassword,
    #[error("too many wrong attempts; try again in {0} s")]
    SlowDown(u64),
    #[error("log in first")]
    NotLoggedIn,
    #[error("missing or wrong X-CSRF-Token header")]
    Csrf,
    #[error("this stream needs the viewer password")]
    ViewerLoginNeeded,
    #[error("no viewer password is set; the stream is open")]
    NoViewerPassword,
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

/// A browser that gave the viewer password.
#[derive(Debug, Clone)]
struct ViewerSession {
    expires_ns: u64,
    /// The viewer password hash it was opened under: changing or clearing
    /// the password ends it.
    password: String,
}

pub struct Auth {
    dir: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    viewer_sessions: Mutex<HashMap<String, ViewerSession>>,
    /// The viewer password's hash, read at start and changed only through
    /// [`Auth::set_viewer_password`]: every stream request checks it, so it
    /// is not read from disk each time.
    viewer_hash: Mutex<Option<String>>,
    /// Wrong passwords per address, admin and viewer together, so trying
    /// both does not double the guesses; wrong setup codes count with them.
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Held while the first password is set: two right setup codes at once
    /// set one password.
    setting_up: Mutex<()>,
}

impl Auth {
    pub fn new(data_dir: &Path) -> Self {
        Auth {
            dir: data_dir.to_path_buf(),
            sessions: Mutex::new(HashMap::new()),
            viewer_sessions: Mutex::new(HashMap::new()),
            viewer_hash: Mutex::new(read_hash(&data_dir.join(VIEWER_PASSWORD_FILE))),
            failures: Mutex::new(HashMap::new()),
            setting_up: Mutex::new(()),
        }
    }

    fn password_hash(&self) -> Option<String> {
        read_hash(&self.dir.join(PASSWORD_FILE))
    }

    /// True until the admin password has been set.
    pub fn setup_needed(&self) -> bool {
        self.password_hash().is_none()
    }

    /// First start: with the setup code, sets the password (refused once
    /// one exists), deletes the code and logs in. Wrong codes from `from`
    /// are slowed down like wrong passwords; the code stays until a password
    /// is set.
    pub fn setup(
        &self,
        from: IpAddr,
        password: &str,
        setup_code: &str,
        now_ns: u64,
    ) -> Result<(String, String), AuthError> {
        let _one_at_a_time = lock(&self.setting_up);
        if !self.setup_needed() {
            return Err(AuthError::AlreadySet);
        }
        if setup_code.trim().is_empty() {
            return Err(AuthError::SetupCodeMissing);
        }
        let expected = match read_setup_code(&self.dir) {
            Some(code) => Some(code),
            // None issued (a library user that never called
            // `prepare_setup_code`, or the file was deleted): issue one now,
            // on the console; this attempt cannot have known it.
            None => match issue_setup_code(&self.dir) {
                Ok(code) => {
                    print_setup_code(&code);
                    None
                }
                Err(e) => return Err(AuthError::Store(e.to_string())),
            },
        };
        self.slowly(from, now_ns, AuthError::SetupCodeWrong, || {
            let given = normalize_setup_code(setup_code).unwrap_or_default();
            expected.is_some_and(|want| constant_time_eq(given.as_bytes(), want.as_bytes()))
        })?;
        if password.chars().count() < MIN_PASSWORD {
            return Err(AuthError::TooShort);
        }
        let hash = hash_password(password)?;
        write_private(&self.dir.join(PASSWORD_FILE), &hash)
            .map_err(|e| AuthError::Store(e.to_string()))?;
        // Used up. Should this fail the code is still useless: setup is
        // refused while a password exists, and a reset writes a new one.
        let _ = remove_if_present(&self.dir.join(SETUP_CODE_FILE));
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
        self.verify_slowly(from, &hash, password, now_ns)?;
        Ok(self.new_session(now_ns, hash))
    }

    /// Checks `password` against `hash`, refusing while `from` must wait
    /// after wrong passwords, and counting this attempt.
    fn verify_slowly(
        &self,
        from: IpAddr,
        hash: &str,
        password: &str,
        now_ns: u64,
    ) -> Result<(), AuthError> {
        self.slowly(from, now_ns, AuthError::WrongPassword, || {
            PasswordHash::new(hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
    }

    /// Runs the secret check `right`, refusing without running it while
    /// `from` must wait after wrong guesses; a wrong guess (`wrong`) makes
    /// the next wait longer, a right one clears the count.
    fn slowly(
        &self,
        from: IpAddr,
        now_ns: u64,
        wrong: AuthError,
        right: impl FnOnce() -> bool,
    ) -> Result<(), AuthError> {
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
        let ok = right();
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
            return Err(wrong);
        }
        failures.remove(&from);
        Ok(())
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

    /// Whether the stream needs the viewer password.
    pub fn viewer_password_set(&self) -> bool {
        lock(&self.viewer_hash).is_some()
    }

    /// Sets (`Some`) or clears (`None`) the viewer password. Either way
    /// every viewer session ends: a changed password locks out those who
    /// knew the old one.
    pub fn set_viewer_password(&self, password: Option<&str>) -> Result<(), AuthError> {
        let path = self.dir.join(VIEWER_PASSWORD_FILE);
        let mut current = lock(&self.viewer_hash);
        match password {
            Some(p) => {
                if p.chars().count() < MIN_PASSWORD {
                    return Err(AuthError::TooShort);
                }
                let hash = hash_password(p)?;
                write_private(&path, &hash).map_err(|e| AuthError::Store(e.to_string()))?;
                *current = Some(hash);
            }
            None => {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(AuthError::Store(e.to_string()))
                    }
                    _ => {}
                }
                *current = None;
            }
        }
        lock(&self.viewer_sessions).clear();
        Ok(())
    }

    /// Checks the viewer password (slowed down like the admin's); on
    /// success returns a viewer session id for the viewer cookie.
    pub fn viewer_login(
        &self,
        from: IpAddr,
        password: &str,
        now_ns: u64,
    ) -> Result<String, AuthError> {
        let Some(hash) = lock(&self.viewer_hash).clone() else {
            return Err(AuthError::NoViewerPassword);
        };
        self.verify_slowly(from, &hash, password, now_ns)?;
        let id = random_token();
        let mut s = lock(&self.viewer_sessions);
        s.retain(|_, v| v.expires_ns > now_ns);
        s.insert(
            id.clone(),
            ViewerSession {
                expires_ns: now_ns + SESSION_NS,
                password: hash,
            },
        );
        Ok(id)
    }

    /// May this request have the stream? Always without a viewer password;
    /// with one, the admin (session or token) or a viewer session.
    pub fn check_viewer(
        &self,
        viewer: Option<&str>,
        admin: Option<&str>,
        bearer: Option<&str>,
        now_ns: u64,
    ) -> Result<(), AuthError> {
        let Some(hash) = lock(&self.viewer_hash).clone() else {
            return Ok(());
        };
        let viewer_ok = viewer.is_some_and(|id| {
            lock(&self.viewer_sessions)
                .get(id)
                .is_some_and(|s| s.expires_ns > now_ns && s.password == hash)
        });
        if viewer_ok || self.check(admin, bearer, now_ns).is_ok() {
            Ok(())
        } else {
            Err(AuthError::ViewerLoginNeeded)
        }
    }

    /// [`reset`] for the running daemon (the board's reset button): also
    /// forgets every session, so none made before the reset becomes valid
    /// again once a new password is set. Returns the fresh setup code.
    pub fn reset(&self) -> std::io::Result<String> {
        let _one_at_a_time = lock(&self.setting_up);
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
/// board's button) and issues a fresh setup code, which it returns for the
/// caller to print: whoever has it sets the new password on the page.
pub fn reset(data_dir: &Path) -> std::io::Result<String> {
    for f in [PASSWORD_FILE, TOKENS_FILE] {
        remove_if_present(&data_dir.join(f))?;
    }
    issue_setup_code(data_dir)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What start-up did about the setup code ([`prepare_setup_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupCode {
    /// The admin password is set: no code (a stale one was deleted).
    NotNeeded,
    /// The code issued before (an earlier start, a reset) still holds.
    Kept(String),
    /// The installer's code, from the SD image's boot partition.
    Adopted(String, PathBuf),
    /// A fresh code.
    New(String),
}

impl SetupCode {
    /// The code, when setup is needed.
    pub fn code(&self) -> Option<&str> {
        match self {
            SetupCode::NotNeeded => None,
            SetupCode::Kept(c) | SetupCode::Adopted(c, _) | SetupCode::New(c) => Some(c),
        }
    }
}

/// At start: while no admin password is set, makes sure `DATA_DIR/setup-code`
/// holds a code: the one already there, else the installer's from
/// `boot_file` (the SD image's boot partition), else a fresh one. Once the
/// password is set, a code left behind is deleted.
pub fn prepare_setup_code(data_dir: &Path, boot_file: &Path) -> std::io::Result<SetupCode> {
    let own = data_dir.join(SETUP_CODE_FILE);
    if read_hash(&data_dir.join(PASSWORD_FILE)).is_some() {
        remove_if_present(&own)?;
        return Ok(SetupCode::NotNeeded);
    }
    if let Some(code) = read_setup_code(data_dir) {
        return Ok(SetupCode::Kept(code));
    }
    let installer = std::fs::read_to_string(boot_file)
        .ok()
        .and_then(|t| parse_setup_code(&t));
    match installer {
        Some(code) => {
            write_setup_code(data_dir, &code)?;
            Ok(SetupCode::Adopted(code, boot_file.to_path_buf()))
        }
        None => Ok(SetupCode::New(issue_setup_code(data_dir)?)),
    }
}

/// The boot partition's setup code file, or the file
/// `$ROOMCAST_BOOT_SETUP_CODE` names.
pub fn boot_setup_code_path() -> PathBuf {
    std::env::var_os(BOOT_SETUP_CODE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(BOOT_DIR).join(setup_code::FILE_NAME))
}

/// [`prepare_setup_code`] for the daemon's start, with what it did on the
/// console (stderr: the journal on the box).
pub fn announce_setup_code(data_dir: &Path) {
    let boot = boot_setup_code_path();
    match prepare_setup_code(data_dir, &boot) {
        Ok(SetupCode::NotNeeded) => {}
        Ok(done) => {
            if let SetupCode::Adopted(_, from) = &done {
                eprintln!(
                    "roomcast: setup code taken from {} (written by roomcast-host image build)",
                    from.display()
                );
            }
            print_setup_code(done.code().unwrap_or_default());
        }
        Err(e) => eprintln!(
            "roomcast: cannot store a setup code in {}: {e}; the first admin password cannot be set until it can",
            data_dir.display()
        ),
    }
}

/// The console line with the setup code.
pub fn print_setup_code(code: &str) {
    eprintln!("roomcast: setup code for the first admin password: {code}");
}

/// The setup code in `DATA_DIR/setup-code`, if one is issued.
pub fn read_setup_code(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(SETUP_CODE_FILE))
        .ok()
        .and_then(|t| parse_setup_code(&t))
}

/// Makes a fresh setup code and stores it in `DATA_DIR/setup-code`.
fn issue_setup_code(data_dir: &Path) -> std::io::Result<String> {
    let code = new_setup_code().map_err(|e| std::io::Error::other(e.to_string()))?;
    write_setup_code(data_dir, &code)?;
    Ok(code)
}

fn write_setup_code(data_dir: &Path, code: &str) -> std::io::Result<()> {
    let path = data_dir.join(SETUP_CODE_FILE);
    write_private(&path, &format!("{code}\n"))?;
    give_to_dir_owner(&path, data_dir);
    Ok(())
}

/// `roomcast --reset-password` run as root on a data directory the daemon's
/// own user owns (the box's `/var/lib/roomcast`): the code file goes to that
/// user, or the daemon could not read it. Best effort.
fn give_to_dir_owner(path: &Path, dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::metadata(path)) {
            if (d.uid(), d.gid()) != (f.uid(), f.gid()) {
                let _ = std::os::unix::fs::chown(path, Some(d.uid()), Some(d.gid()));
            }
        }
    }
}

/// A fresh setup code, `XXXX-XXXX-XXXX-XXXX` (format in
/// `roomcast_media::setup_code`), from the OS random source.
pub fn new_setup_code() -> Result<String, getrandom::Error> {
    let mut b = [0u8; setup_code::LEN];
    getrandom::getrandom(&mut b)?;
    Ok(setup_code::from_random(&b))
}

pub use setup_code::{normalize as normalize_setup_code, parse_file as parse_setup_code};

/// An argon2id PHC string for `password` with a fresh salt.
fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| AuthError::Store(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Store(e.to_string()))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AuthError::Store(e.to_string()))?
        .to_string())
}

/// A stored hash, or `None` when the file is missing or empty.
fn read_hash(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
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

    /// A fresh directory for the test `tag` (removed by the test when it
    /// passes), and an `Auth` keeping its files there.
    fn auth(tag: &str) -> (PathBuf, Auth) {
        let d = std::env::temp_dir().join(format!("roomcast-auth-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let a = Auth::new(&d);
        (d, a)
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// Sets the first password with the setup code from the data directory,
    /// issuing one as the daemon's start does.
    fn setup(
        d: &Path,
        a: &Auth,
        password: &str,
        now_ns: u64,
    ) -> Result<(String, String), AuthError> {
        prepare_setup_code(d, &d.join("no-boot-partition")).unwrap();
        let code = read_setup_code(d).unwrap_or_default();
        a.setup(IP, password, &code, now_ns)
    }

    #[test]
    fn nothing_is_open_before_setup_and_setup_happens_once() {
        let (d, a) = auth("setup");
        assert!(a.setup_needed());
        assert_eq!(a.check(None, None, 0), Err(AuthError::SetupNeeded));
        assert_eq!(a.login(IP, "whatever1", 0), Err(AuthError::SetupNeeded));
        assert_eq!(setup(&d, &a, "short", 0), Err(AuthError::TooShort));
        let (sid, csrf) = setup(&d, &a, "correct horse", 0).unwrap();
        assert_eq!(a.check(Some(&sid), None, 1), Ok(Access::Session { csrf }));
        assert_eq!(
            a.setup(IP, "another one", "2222-2222-2222-2222", 0),
            Err(AuthError::AlreadySet)
        );
        let stored = std::fs::read_to_string(d.join(PASSWORD_FILE)).unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        reset(&d).unwrap();
        assert!(a.setup_needed());
        // A session from before a reset does not come back with a new password.
        setup(&d, &a, "a new password", 2).unwrap();
        assert_eq!(a.check(Some(&sid), None, 3), Err(AuthError::NotLoggedIn));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn setup_codes_are_typable_random_and_parsed_leniently() {
        let a = new_setup_code().unwrap();
        let b = new_setup_code().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 19, "{a}");
        for (i, c) in a.bytes().enumerate() {
            if i % 5 == 4 {
                assert_eq!(c, b'-', "{a}");
            } else {
                assert!(setup_code::ALPHABET.contains(&c), "{a}");
            }
        }
        // No look-alikes in the alphabet, and every symbol once.
        for c in b"01IO" {
            assert!(!setup_code::ALPHABET.contains(c));
        }
        let mut sorted = setup_code::ALPHABET.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 32);
        // Any case, dashes or spaces or neither.
        let want = Some("ABCD-EFGH-JKLM-NP23".to_string());
        for typed in [
            "ABCD-EFGH-JKLM-NP23",
            "abcd-efgh-jklm-np23",
            " abcdefghjklmnp23 ",
            "ABCD EFGH JKLM NP23",
        ] {
            assert_eq!(normalize_setup_code(typed), want, "{typed:?}");
        }
        for bad in [
            "",
            "ABCD-EFGH-JKLM-NP2",
            "ABCD-EFGH-JKLM-NP234",
            "ABCD-EFGH-JKLM-NP21",
            "ÄBCD-EFGH-JKLM-NP23",
        ] {
            assert_eq!(normalize_setup_code(bad), None, "{bad:?}");
        }
        // The files: the code alone, or after comments (the boot
        // partition's), CRLF and a BOM as an editor on another OS may leave.
        assert_eq!(parse_setup_code("ABCD-EFGH-JKLM-NP23\n"), want);
        assert_eq!(
            parse_setup_code("\u{feff}# roomcast setup code\r\n#\r\n\r\nabcd-efgh-jklm-np23\r\n"),
            want
        );
        assert_eq!(parse_setup_code("# only a comment\n"), None);
        assert_eq!(parse_setup_code("not a code\nABCD-EFGH-JKLM-NP23\n"), None);
    }

    #[test]
    fn setup_needs_the_code_wrong_codes_slow_down_and_it_is_used_once() {
        let (d, a) = auth("code");
        let code = prepare_setup_code(&d, &d.join("none")).unwrap();
        let SetupCode::New(code) = code else {
            panic!("{code:?}")
        };
        // Kept across restarts until used.
        assert_eq!(
            prepare_setup_code(&d, &d.join("none")).unwrap(),
            SetupCode::Kept(code.clone())
        );
        let file = d.join(SETUP_CODE_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{code}\n"));
        assert_eq!(
            a.setup(IP, "correct horse", "", 0),
            Err(AuthError::SetupCodeMissing)
        );
        // Wrong codes count with wrong passwords: three free, then waits.
        let wrong = if code.starts_with('2') {
            "3333-3333-3333-3333"
        } else {
            "2222-2222-2222-2222"
        };
        for (typed, at_ns, refusal) in [
            (wrong, 0, AuthError::SetupCodeWrong),
            ("not even a code", 0, AuthError::SetupCodeWrong),
            (wrong, 0, AuthError::SetupCodeWrong),
            (code.as_str(), 500_000_000, AuthError::SlowDown(1)),
        ] {
            let got = a.setup(IP, "correct horse", typed, at_ns);
            assert_eq!(got, Err(refusal), "{typed:?} at {at_ns} ns");
        }
        assert_eq!(
            a.login(IP, "correct horse", 600_000_000),
            Err(AuthError::SetupNeeded)
        );
        assert!(a.setup_needed());
        // The right code, typed loosely, once the wait is over; a short
        // password with it is refused and leaves the code usable.
        let typed = code.to_lowercase().replace('-', " ");
        assert_eq!(
            a.setup(IP, "short", &typed, 1_000_000_000),
            Err(AuthError::TooShort)
        );
        let (sid, _) = a.setup(IP, "correct horse", &typed, 1_000_000_000).unwrap();
        assert!(a.check(Some(&sid), None, 2).is_ok());
        assert!(!file.exists(), "the code is deleted once used");
        assert_eq!(
            a.setup(IP, "another one", &code, 2),
            Err(AuthError::AlreadySet)
        );
        assert_eq!(
            prepare_setup_code(&d, &d.join("none")).unwrap(),
            SetupCode::NotNeeded
        );
        // A right code cleared the count: a wrong password is free again.
        assert_eq!(
            a.login(IP, "nope", 1_000_000_001),
            Err(AuthError::WrongPassword)
        );
        // A reset issues a fresh code (the old one stays dead) and ends sessions.
        let fresh = a.reset().unwrap();
        assert_ne!(fresh, code);
        assert_eq!(read_setup_code(&d), Some(fresh.clone()));
        assert_eq!(a.check(Some(&sid), None, 3), Err(AuthError::SetupNeeded));
        assert_eq!(
            a.setup(IP, "correct horse", &code, 3),
            Err(AuthError::SetupCodeWrong)
        );
        a.setup(IP, "correct horse", &fresh, 3).unwrap();
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_installers_code_is_adopted_once_and_a_lost_code_is_reissued() {
        let (d, a) = auth("adopt");
        let boot = d.join("roomcast-setup-code.txt");
        std::fs::write(
            &boot,
            "# roomcast setup code, see README\r\nabcd-efgh-jklm-np23\r\n",
        )
        .unwrap();
        let got = prepare_setup_code(&d, &boot).unwrap();
        assert_eq!(
            got,
            SetupCode::Adopted("ABCD-EFGH-JKLM-NP23".into(), boot.clone())
        );
        // Afterwards the data directory's copy rules, even if the boot
        // partition's changes.
        std::fs::write(&boot, "2222-2222-2222-2222\n").unwrap();
        assert_eq!(
            prepare_setup_code(&d, &boot).unwrap(),
            SetupCode::Kept("ABCD-EFGH-JKLM-NP23".into())
        );
        // A file that holds no code is ignored: a fresh one.
        std::fs::remove_file(d.join(SETUP_CODE_FILE)).unwrap();
        std::fs::write(&boot, "# nothing here\n").unwrap();
        let SetupCode::New(fresh) = prepare_setup_code(&d, &boot).unwrap() else {
            panic!("no fresh code")
        };
        // The code deleted while running: setup issues another (printed)
        // and refuses the attempt that could not have known it.
        std::fs::remove_file(d.join(SETUP_CODE_FILE)).unwrap();
        assert_eq!(
            a.setup(IP, "correct horse", &fresh, 0),
            Err(AuthError::SetupCodeWrong)
        );
        let reissued = read_setup_code(&d).unwrap();
        a.setup(IP, "correct horse", &reissued, 0).unwrap();
        // The free function (`roomcast --reset-password`) issues one too.
        let code = reset(&d).unwrap();
        assert_eq!(read_setup_code(&d), Some(code));
        assert!(!d.join(PASSWORD_FILE).exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn login_logout_expiry_and_wrong_passwords_slow_down() {
        let (d, a) = auth("login");
        setup(&d, &a, "correct horse", 0).unwrap();
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(a.login(IP, "nope", 0), Err(AuthError::WrongPassword));
        }
        // The third failure starts the back-off: 1 s, then 2 s …
        for (password, at_ns, refusal) in [
            ("nope", 0, AuthError::WrongPassword),
            ("correct horse", 500_000_000, AuthError::SlowDown(1)),
            ("nope", 1_000_000_000, AuthError::WrongPassword),
            ("nope", 2_000_000_000, AuthError::SlowDown(1)),
        ] {
            let got = a.login(IP, password, at_ns);
            assert_eq!(got, Err(refusal), "{password:?} at {at_ns} ns");
        }
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
        let (d, a) = auth("token");
        let t = a.new_api_token().unwrap();
        assert_eq!(a.check(None, Some(&t), 0), Ok(Access::Token));
        assert_eq!(
            a.check(None, Some("0123456789abcdef-wrong"), 0),
            Err(AuthError::SetupNeeded)
        );
        setup(&d, &a, "correct horse", 0).unwrap();
        assert_eq!(a.check(None, Some("short"), 0), Err(AuthError::NotLoggedIn));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn viewer_password_guards_the_stream_only_and_is_never_stored_plain() {
        let (d, a) = auth("viewer");
        let (admin, _) = setup(&d, &a, "correct horse", 0).unwrap();
        // No viewer password: the stream is open to anyone.
        assert!(!a.viewer_password_set());
        assert_eq!(a.check_viewer(None, None, None, 0), Ok(()));
        assert_eq!(
            a.viewer_login(IP, "anything", 0),
            Err(AuthError::NoViewerPassword)
        );
        assert_eq!(
            a.set_viewer_password(Some("short")),
            Err(AuthError::TooShort)
        );
        a.set_viewer_password(Some("room 4 viewers")).unwrap();
        assert!(a.viewer_password_set());
        let stored = std::fs::read_to_string(d.join(VIEWER_PASSWORD_FILE)).unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("room 4 viewers"));
        // Locked: nothing, a made-up cookie or a wrong password get nothing.
        assert_eq!(
            a.check_viewer(None, None, None, 1),
            Err(AuthError::ViewerLoginNeeded)
        );
        assert_eq!(
            a.check_viewer(Some("made-up"), None, None, 1),
            Err(AuthError::ViewerLoginNeeded)
        );
        assert_eq!(
            a.viewer_login(IP, "correct horse", 1),
            Err(AuthError::WrongPassword)
        );
        // The admin (session or token) may watch; so may a viewer session.
        assert_eq!(a.check_viewer(None, Some(&admin), None, 1), Ok(()));
        let token = a.new_api_token().unwrap();
        assert_eq!(a.check_viewer(None, None, Some(&token), 1), Ok(()));
        let viewer = a.viewer_login(IP, "room 4 viewers", 2).unwrap();
        assert_eq!(a.check_viewer(Some(&viewer), None, None, 3), Ok(()));
        // A viewer session unlocks no admin API, even in the admin cookie.
        assert_eq!(a.check(Some(&viewer), None, 3), Err(AuthError::NotLoggedIn));
        // It expires like an admin session.
        assert_eq!(
            a.check_viewer(Some(&viewer), None, None, SESSION_NS + 3),
            Err(AuthError::ViewerLoginNeeded)
        );
        // A new password ends the old viewer sessions; a restart keeps it.
        a.set_viewer_password(Some("another viewer pw")).unwrap();
        assert_eq!(
            a.check_viewer(Some(&viewer), None, None, 4),
            Err(AuthError::ViewerLoginNeeded)
        );
        assert!(Auth::new(&d).viewer_password_set());
        // Cleared: open again, and the file is gone.
        a.set_viewer_password(None).unwrap();
        assert_eq!(a.check_viewer(None, None, None, 5), Ok(()));
        assert!(!d.join(VIEWER_PASSWORD_FILE).exists());
        a.set_viewer_password(None).unwrap();
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn viewer_logins_are_slowed_down_with_admin_logins() {
        let (d, a) = auth("viewer-slow");
        setup(&d, &a, "correct horse", 0).unwrap();
        a.set_viewer_password(Some("room 4 viewers")).unwrap();
        // Guesses at either password count together.
        assert_eq!(a.viewer_login(IP, "nope", 0), Err(AuthError::WrongPassword));
        assert_eq!(a.login(IP, "nope", 0), Err(AuthError::WrongPassword));
        assert_eq!(a.viewer_login(IP, "nope", 0), Err(AuthError::WrongPassword));
        assert_eq!(
            a.viewer_login(IP, "room 4 viewers", 500_000_000),
            Err(AuthError::SlowDown(1))
        );
        assert!(a.viewer_login(IP, "room 4 viewers", 1_000_000_000).is_ok());
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
