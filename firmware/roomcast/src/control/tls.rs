//! The box's HTTPS certificate: a self-signed one made on first start, or
//! one the admin uploads (PEM certificate chain and private key).
//!
//! * Kept in `DATA_DIR/tls/` (`cert.pem`, `key.pem`, 0600); `self-signed`
//!   marks a certificate the box made, so removing an uploaded one brings a
//!   fresh self-signed certificate back.
//! * The HTTPS server asks [`CertStore`] for the certificate on every
//!   handshake, so an upload takes effect for the next connection without a
//!   restart.
//! * The SHA-256 fingerprint of the certificate (what browsers show next to
//!   a self-signed certificate's warning) is printed at start, shown on the
//!   page and in `/api/status`, and announced by mDNS, so an installer can
//!   check they reach their own box.

use crate::base::lock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const DIR: &str = "tls";
const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";
/// Present when the box made the certificate itself.
const SELF_SIGNED: &str = "self-signed";
/// An uploaded certificate chain or key larger than this is refused.
pub const MAX_PEM: usize = 32 * 1024;

/// Why a certificate was refused or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate is not PEM (-----BEGIN CERTIFICATE-----): {0}")]
    Cert(String),
    #[error("no certificate in the PEM text")]
    NoCert,
    #[error("the private key is not PEM (PKCS#8, PKCS#1 or SEC1): {0}")]
    Key(String),
    #[error("the private key is not usable: {0}")]
    BadKey(String),
    #[error("the private key does not belong to the certificate")]
    Mismatch,
    #[error("PEM text larger than {MAX_PEM} bytes")]
    TooLarge,
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("cannot store the certificate: {0}")]
    Store(#[from] std::io::Error),
}

/// The certificate in use, for status and the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the leaf certificate (DER), colon-separated hex.
    pub fingerprint: String,
    pub self_signed: bool,
}

struct Current {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

/// The certificate the HTTPS server presents; replaced by uploads.
pub struct CertStore {
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").field("dir", &self.dir).finish()
    }
}

impl CertStore {
    /// Loads the stored certificate, or makes and stores a self-signed one
    /// for `names` (host names and addresses the box answers to).
    pub fn open(data_dir: &Path, names: &[String]) -> Result<CertStore, TlsError> {
        let dir = data_dir.join(DIR);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = std::fs::read(dir.join(CERT))
            .and_then(|c| Ok((c, std::fs::read(dir.join(KEY))?)))
            .ok()
            .and_then(|(c, k)| certified(&provider, &c, &k).ok());
        let current = match loaded {
            Some((key, fingerprint)) => Current {
                key,
                info: CertInfo {
                    fingerprint,
                    self_signed: dir.join(SELF_SIGNED).exists(),
                },
            },
            None => make_self_signed(&dir, &provider, names)?,
        };
        Ok(CertStore {
            dir,
            provider,
            current: Mutex::new(current),
        })
    }

    pub fn info(&self) -> CertInfo {
        lock(&self.current).info.clone()
    }

    /// Checks and stores an uploaded certificate chain and key; the next
    /// HTTPS connection presents it. A refused upload changes nothing.
    pub fn install(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertInfo, TlsError> {
        if cert_pem.len() > MAX_PEM || key_pem.len() > MAX_PEM {
            return Err(TlsError::TooLarge);
        }
        let (key, fingerprint) = certified(&self.provider, cert_pem, key_pem)?;
        std::fs::create_dir_all(&self.dir)?;
        write_private(&self.dir.join(KEY), key_pem)?;
        write_private(&self.dir.join(CERT), cert_pem)?;
        let _ = std::fs::remove_file(self.dir.join(SELF_SIGNED));
        let info = CertInfo {
            fingerprint,
            self_signed: false,
        };
        *lock(&self.current) = Current {
            key,
            info: info.clone(),
        };
        Ok(info)
    }

    /// Drops an uploaded certificate for a fresh self-signed one.
    pub fn reset(&self, names: &[String]) -> Result<CertInfo, TlsError> {
        let fresh = make_self_signed(&self.dir, &self.provider, names)?;
        let info = fresh.info.clone();
        *lock(&self.current) = fresh;
        Ok(info)
    }

    /// The rustls server configuration: this store's certificate, HTTP/2
    /// and HTTP/1.1 offered by ALPN.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut c = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(c)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(lock(&self.current).key.clone())
    }
}

/// Parses a PEM chain and key into what rustls presents, checking that the
/// key is the certificate's; also the leaf's fingerprint.
fn certified(
    provider: &CryptoProvider,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Arc<CertifiedKey>, String), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let leaf = certs.first().ok_or(TlsError::NoCert)?;
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey(e.to_string()))?;
    let ck = CertifiedKey::new(certs, signing);
    match ck.keys_match() {
        Ok(()) => Ok((Arc::new(ck), fingerprint)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch),
        // The key's public half cannot be compared (an unusual key type):
        // the handshake would fail instead, so refuse it here.
        Err(e) => Err(TlsError::BadKey(e.to_string())),
    }
}

/// SHA-256 of a certificate, as browsers show it: `AB:CD:…`.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn make_self_signed(
    dir: &Path,
    provider: &CryptoProvider,
    names: &[String],
) -> Result<Current, TlsError> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert_pem = generated.cert.pem();
    let key_pem = generated.signing_key.serialize_pem();
    let (key, fingerprint) = certified(provider, cert_pem.as_bytes(), key_pem.as_bytes())?;
    std::fs::create_dir_all(dir)?;
    write_private(&dir.join(KEY), key_pem.as_bytes())?;
    write_private(&dir.join(CERT), cert_pem.as_bytes())?;
    std::fs::write(dir.join(SELF_SIGNED), b"made by the box\n")?;
    Ok(Current {
        key,
        info: CertInfo {
            fingerprint,
            self_signed: true,
        },
    })
}

/// Writes `bytes` to `path` readable by the owner only (temp file, rename).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The names a self-signed certificate covers: the host name, its `.local`
/// name, `localhost` and the loopback addresses (browsers still warn: the
/// fingerprint is how an installer recognises the box).
pub fn default_names() -> Vec<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut names = Vec::new();
    if !host.is_empty() {
        names.push(format!("{host}.local"));
        names.push(host);
    }
    names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("roomcast-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names() -> Vec<String> {
        vec!["box.local".into(), "127.0.0.1".into()]
    }

    #[test]
    fn first_start_makes_a_private_self_signed_certificate_and_keeps_it() {
        let d = dir("first");
        let a = CertStore::open(&d, &names()).unwrap().info();
        assert!(a.self_signed);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        #[cfg(unix)]
        for f in [KEY, CERT] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.join(DIR).join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        // The next start presents the same certificate.
        assert_eq!(CertStore::open(&d, &names()).unwrap().info(), a);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn uploads_are_checked_then_replace_the_certificate() {
        let d = dir("upload");
        let store = CertStore::open(&d, &names()).unwrap();
        let before = store.info();
        let other = rcgen::generate_simple_self_signed(vec!["studio.example".into()]).unwrap();
        let third = rcgen::generate_simple_self_signed(vec!["x.example".into()]).unwrap();
        let (cert, key) = (other.cert.pem(), other.signing_key.serialize_pem());
        // Refused: garbage, a key of another certificate, too large.
        assert!(matches!(
            store.install(b"hello", key.as_bytes()),
            Err(TlsError::NoCert)
        ));
        assert!(matches!(
            store.install(cert.as_bytes(), b"nope"),
            Err(TlsError::Key(_))
        ));
        let wrong = third.signing_key.serialize_pem();
        assert!(matches!(
            store.install(cert.as_bytes(), wrong.as_bytes()),
            Err(TlsError::Mismatch)
        ));
        let huge = vec![b'A'; MAX_PEM + 1];
        assert!(matches!(
            store.install(&huge, key.as_bytes()),
            Err(TlsError::TooLarge)
        ));
        assert_eq!(store.info(), before, "a refused upload changes nothing");
        // Accepted: presented from now on, and after a restart.
        let info = store.install(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(info.fingerprint, fingerprint(other.cert.der()));
        assert!(!info.self_signed);
        assert_eq!(CertStore::open(&d, &names()).unwrap().info(), info);
        // Reset: a fresh self-signed one.
        let back = store.reset(&names()).unwrap();
        assert!(back.self_signed);
        assert_ne!(back.fingerprint, before.fingerprint);
        std::fs::remove_dir_all(d).unwrap();
    }
}
