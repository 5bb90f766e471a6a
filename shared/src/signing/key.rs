//! Signing keys: a service account's RSA key (`GOOG4-RSA-SHA256`) or an HMAC key
//! (`GOOG4-HMAC-SHA256`). Each can both sign and verify.

use std::fmt;
use std::path::Path;

use ring::signature::{self, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use super::Scope;
use crate::error::{Error, Result};

/// A key that signs and verifies V4 signatures.
pub enum SigningKey {
    /// A service account's RSA key.
    Rsa {
        /// The account's e-mail, which is the credential id.
        client_email: String,
        /// The key pair (boxed: it is large, and keys are few).
        key: Box<RsaKeyPair>,
    },
    /// An HMAC key.
    Hmac {
        /// The access id (credential id).
        access_id: String,
        /// The secret.
        secret: Vec<u8>,
    },
}

impl fmt::Debug for SigningKey {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({} {})",
            self.algorithm(),
            self.credential_id()
        )
    }
}

#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
}

impl SigningKey {
    /// Reads a service account JSON key file.
    pub fn from_service_account_file(path: &Path) -> Result<SigningKey> {
        let text = std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "signing.service_account_file: cannot read {}: {e}",
                path.display()
            ))
        })?;
        SigningKey::from_service_account_json(&text)
    }

    /// Parses a service account JSON key.
    pub fn from_service_account_json(json: &[u8]) -> Result<SigningKey> {
        let account: ServiceAccountKey = serde_json::from_slice(json)
            .map_err(|e| Error::Config(format!("service account key: {e}")))?;
        let der = PrivateKeyDer::from_pem_slice(account.private_key.as_bytes())
            .map_err(|e| Error::Config(format!("service account key: private_key: {e}")))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(Error::Config(
                "service account key: private_key must be PKCS#8".into(),
            ));
        };
        let key = RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der())
            .map_err(|e| Error::Config(format!("service account key: private_key: {e}")))?;
        Ok(SigningKey::Rsa {
            client_email: account.client_email,
            key: Box::new(key),
        })
    }

    /// An HMAC key.
    pub fn hmac(access_id: impl Into<String>, secret: impl Into<Vec<u8>>) -> SigningKey {
        SigningKey::Hmac {
            access_id: access_id.into(),
            secret: secret.into(),
        }
    }

    /// The algorithm name that goes into `X-Goog-Algorithm`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Rsa { .. } => "GOOG4-RSA-SHA256",
            SigningKey::Hmac { .. } => "GOOG4-HMAC-SHA256",
        }
    }

    /// The credential id: the service account e-mail or the HMAC access id.
    pub fn credential_id(&self) -> &str {
        match self {
            SigningKey::Rsa { client_email, .. } => client_email,
            SigningKey::Hmac { access_id, .. } => access_id,
        }
    }

    /// Signs a string to sign.
    pub fn sign(&self, scope: &Scope, string_to_sign: &[u8]) -> Result<Vec<u8>> {
        match self {
            SigningKey::Rsa { key, .. } => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    string_to_sign,
                    &mut signature,
                )
                .map_err(|_| Error::Internal("RSA signing failed".into()))?;
                Ok(signature)
            }
            SigningKey::Hmac { secret, .. } => {
                let key = hmac_signing_key(secret, scope);
                Ok(ring::hmac::sign(&key, string_to_sign).as_ref().to_vec())
            }
        }
    }

    /// Whether `signature` is a valid signature of `string_to_sign` by this key.
    pub fn verify(&self, scope: &Scope, string_to_sign: &[u8], signature: &[u8]) -> bool {
        match self {
            SigningKey::Rsa { key, .. } => signature::UnparsedPublicKey::new(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                key.public().as_ref(),
            )
            .verify(string_to_sign, signature)
            .is_ok(),
            SigningKey::Hmac { secret, .. } => {
                // Constant-time comparison.
                ring::hmac::verify(&hmac_signing_key(secret, scope), string_to_sign, signature)
                    .is_ok()
            }
        }
    }
}

/// Derives the V4 HMAC signing key: GOOG4+secret → date → region → service → request.
fn hmac_signing_key(secret: &[u8], scope: &Scope) -> ring::hmac::Key {
    let step = |key: &[u8], data: &str| {
        ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            data.as_bytes(),
        )
        .as_ref()
        .to_vec()
    };
    let first = [b"GOOG4".as_slice(), secret].concat();
    let date = step(&first, &scope.date());
    let region = step(&date, "auto");
    let service = step(&region, "storage");
    let request = step(&service, "goog4_request");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &request)
}
