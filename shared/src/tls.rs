//! TLS for edges: the development certificate authority that `meridian up` creates
//! (so `curl --cacert <data>/ca.pem` works) and rustls server configs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// Installs aws-lc-rs as the process's rustls crypto provider. Both aws-lc-rs and ring
/// end up in the build (through dependencies), so rustls cannot pick one by itself.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A ready rustls server configuration.
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct PemPair {
    /// Certificate chain, PEM.
    pub cert_pem: String,
    /// Private key (PKCS#8), PEM.
    pub key_pem: String,
}

/// The development certificate authority of a local stack.
pub struct DevCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl DevCa {
    /// Where the CA certificate lives in a data folder.
    pub fn cert_path(data_dir: &Path) -> PathBuf {
        data_dir.join("ca.pem")
    }

    /// Loads the CA from `data_dir`, creating it on first use. The key is written
    /// readable by the owner only.
    pub fn load_or_create(data_dir: &Path) -> Result<DevCa> {
        let cert_path = DevCa::cert_path(data_dir);
        let key_path = data_dir.join("ca-key.pem");
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path)?;
            let key = KeyPair::from_pem(&std::fs::read_to_string(&key_path)?)
                .map_err(|e| Error::Config(format!("{}: {e}", key_path.display())))?;
            // The parameters are deterministic, so rebuilding them matches the stored CA.
            return Ok(DevCa {
                cert_pem,
                issuer: Issuer::new(ca_params(), key),
            });
        }
        std::fs::create_dir_all(data_dir)?;
        let key = KeyPair::generate().map_err(tls_error)?;
        let cert = ca_params().self_signed(&key).map_err(tls_error)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, cert.pem())?;
        Ok(DevCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a server certificate for `localhost`, 127.0.0.1 and ::1.
    pub fn issue_localhost(&self) -> Result<PemPair> {
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let mut params = CertificateParams::new(names).map_err(tls_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Meridian edge (development)");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(tls_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(tls_error)?;
        Ok(PemPair {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Meridian development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn tls_error(e: rcgen::Error) -> Error {
    Error::internal("certificate generation failed", e)
}

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)?;
    Ok(())
}

/// A rustls server config (HTTP/2 and HTTP/1.1) from a PEM certificate chain and key.
pub fn server_config(pair: &PemPair) -> Result<TlsConfig> {
    let (certs, key) = parse_pem_pair(pair, "TLS certificate", "TLS key")?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("TLS certificate and key: {e}")))?;
    Ok(with_alpn(config))
}

/// `config`, offering HTTP/2 and HTTP/1.1, ready to serve.
pub(crate) fn with_alpn(mut config: rustls::ServerConfig) -> TlsConfig {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The certificate chain (at least one) and private key of `pair`, parsed, errors
/// naming them `cert_name` and `key_name`; the crypto provider installed for what
/// comes next.
pub(crate) fn parse_pem_pair(
    pair: &PemPair,
    cert_name: &str,
    key_name: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    install_crypto_provider();
    let certs = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{cert_name}: {e:?}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("{cert_name}: no certificate in it")));
    }
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
        .map_err(|e| Error::Config(format!("{key_name}: {e:?}")))?;
    Ok((certs, key))
}

/// Reads a PEM certificate chain and key from files.
pub fn read_pem_pair(cert: &Path, key: &Path) -> Result<PemPair> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))
    };
    Ok(PemPair {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_survives_a_reload_and_issues_usable_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DevCa::load_or_create(dir.path()).expect("create");
        let again = DevCa::load_or_create(dir.path()).expect("reload");
        assert_eq!(first.cert_pem(), again.cert_pem());
        let pair = again.issue_localhost().expect("issue");
        assert!(server_config(&pair).is_ok());
    }
}
