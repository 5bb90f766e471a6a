//! What a local stack's data folder holds for everyone who talks to the stack: the
//! secrets it generated for itself, and trust in its development certificate
//! authority. Both the stack (`meridian up`) and the client commands use these.

use std::path::{Path, PathBuf};

use meridian_shared::auth;
use meridian_shared::config::OutboundSettings;
use meridian_shared::tls::DevCa;

use crate::error::Result;

/// Secrets a local stack makes for itself on first start, kept (owner-only) in the
/// data folder so a restart keeps tokens and URLs valid.
pub struct LocalSecrets {
    /// HS256 secret for bearer tokens.
    pub jwt: String,
    /// HMAC secret for signed URLs.
    pub hmac: String,
    /// The replicator's purge-signing key (Ed25519 PKCS#8, base64).
    pub purge_key: String,
    /// Its public half (base64), also written to `purge-key.pub` for edges run by hand.
    pub purge_public_key: String,
}

impl LocalSecrets {
    /// The folder holding the secrets.
    pub fn dir(data_dir: &Path) -> PathBuf {
        data_dir.join("secrets")
    }

    /// Loads the secrets, creating any that are missing.
    pub fn load_or_create(data_dir: &Path) -> Result<LocalSecrets> {
        let dir = LocalSecrets::dir(data_dir);
        std::fs::create_dir_all(&dir)?;
        let purge_key = secret_file(&dir.join("purge-key"), || {
            Ok(auth::PurgeSigningKey::generate()?.to_base64())
        })?;
        let purge_public_key = auth::PurgeSigningKey::from_base64(&purge_key)?
            .public_key()
            .to_base64();
        let public_path = dir.join("purge-key.pub");
        if std::fs::read_to_string(&public_path).ok().as_deref() != Some(purge_public_key.as_str())
        {
            std::fs::write(&public_path, &purge_public_key)?;
        }
        Ok(LocalSecrets {
            jwt: secret_file(&dir.join("jwt-secret"), auth::generate_secret)?,
            hmac: secret_file(&dir.join("hmac-secret"), auth::generate_secret)?,
            purge_key,
            purge_public_key,
        })
    }
}

/// The secret in `path`, made by `generate` (and written owner-only) if it is not
/// there yet.
fn secret_file(
    path: &Path,
    generate: impl FnOnce() -> meridian_shared::Result<String>,
) -> Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_string());
    }
    let secret = generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, secret.as_bytes())?;
    Ok(secret)
}

/// An HTTP client that trusts only the development CA (the edges' certificates), with
/// `limits`' connect and read timeouts.
pub fn trusting_client(ca: &DevCa, limits: &OutboundSettings) -> Result<reqwest::Client> {
    trusting(meridian_shared::outbound::client_builder(limits), ca)
}

/// Like [`trusting_client`], for `meridian_shared::outbound::send_streaming_upload`:
/// only the connect timeout, since the upload watches its own body.
pub fn trusting_upload_client(ca: &DevCa, limits: &OutboundSettings) -> Result<reqwest::Client> {
    trusting(meridian_shared::outbound::upload_client_builder(limits), ca)
}

fn trusting(builder: reqwest::ClientBuilder, ca: &DevCa) -> Result<reqwest::Client> {
    let cert = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes())?;
    Ok(builder.tls_certs_only([cert]).build()?)
}
