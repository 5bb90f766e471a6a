//! A server certificate that follows its files: every few seconds the certificate and
//! key files are looked at (modification time and length), and when they changed the
//! new pair is loaded and used for the next handshakes. Connections already open keep
//! the keys they agreed on, so nothing is dropped. A pair that does not load (a bad
//! file, a key that does not match the certificate, a copy caught half-written) is
//! refused with a log line and the current pair stays; it is tried again when the
//! files change again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::{Error, Result};
use crate::tls::TlsConfig;

/// The certificate handed to each new handshake: the latest pair that loaded.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}

/// What a file looked like: changes when it is rewritten or replaced.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads a certificate chain and its key (PEM), checking that they belong together.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let pair = crate::tls::read_pem_pair(cert, key)?;
    let (certs, private) = crate::tls::parse_pem_pair(
        &pair,
        &cert.display().to_string(),
        &key.display().to_string(),
    )?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .ok_or_else(|| Error::internal_msg("no TLS crypto provider installed"))?;
    CertifiedKey::from_der(certs, private, provider)
        .map_err(|e| Error::Config(format!("{} and {}: {e}", cert.display(), key.display())))
}

/// A TLS server configuration (HTTP/2 and HTTP/1.1) whose certificate is read from
/// `cert` and `key` now, and again whenever they change (looked at every `every`).
/// Fails if the first pair does not load. Needs a tokio runtime (the watcher is a
/// task, which ends when the configuration is dropped).
pub fn reloading_server_config(cert: &Path, key: &Path, every: Duration) -> Result<TlsConfig> {
    let stamps = (stamp(cert), stamp(key));
    let current = Arc::new(CurrentCert(RwLock::new(Arc::new(load(cert, key)?))));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(current.clone());
    tokio::spawn(watch(
        Arc::downgrade(&current),
        cert.to_path_buf(),
        key.to_path_buf(),
        every,
        stamps,
    ));
    Ok(crate::tls::with_alpn(config))
}

async fn watch(
    current: Weak<CurrentCert>,
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
    mut seen: (Stamp, Stamp),
) {
    loop {
        tokio::time::sleep(every).await;
        let Some(current) = current.upgrade() else {
            return; // the server is gone
        };
        let now = (stamp(&cert), stamp(&key));
        if now == seen {
            continue;
        }
        seen = now;
        match load(&cert, &key) {
            Ok(pair) => {
                *current
                    .0
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(pair);
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(
                cause = %e,
                "the new TLS certificate and key were refused; the current ones stay"
            ),
        }
    }
}
