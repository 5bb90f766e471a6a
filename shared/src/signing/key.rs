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
        // Google issues PKCS#8; keys converted by hand are often PKCS#1.
        let key = match der {
            PrivateKeyDer::Pkcs8(pkcs8) => RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(pkcs1) => RsaKeyPair::from_der(pkcs1.secret_pkcs1_der()),
            _ => {
                return Err(Error::Config(
                    "service account key: private_key must be an RSA key (PKCS#8 or PKCS#1)".into(),
                ));
            }
        }
        .map_err(|e| {
            Error::Config(format!(
                "service account key: private_key is not a usable RSA key: {e}"
            ))
        })?;
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
                .map_err(|_| Error::internal_msg("RSA signing failed"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS8: &str = include_str!("testdata/rsa-pkcs8.not-a-secret.pem");
    const PKCS1: &str = include_str!("testdata/rsa-pkcs1.not-a-secret.pem");
    const EC: &str = include_str!("testdata/ec-p256.not-a-secret.pem");

    fn account(private_key: &str) -> Vec<u8> {
        serde_json::json!({
            "client_email": "signer@example.iam.gserviceaccount.com",
            "private_key": private_key,
        })
        .to_string()
        .into_bytes()
    }

    fn scope() -> Scope {
        Scope::new(
            chrono::DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
                .expect("date")
                .to_utc(),
        )
    }

    #[test]
    fn pkcs8_and_pkcs1_forms_of_one_rsa_key_sign_alike() {
        let pkcs8 = SigningKey::from_service_account_json(&account(PKCS8)).expect("PKCS#8");
        let pkcs1 = SigningKey::from_service_account_json(&account(PKCS1)).expect("PKCS#1");
        assert_eq!(pkcs8.algorithm(), "GOOG4-RSA-SHA256");
        assert_eq!(
            pkcs8.credential_id(),
            "signer@example.iam.gserviceaccount.com"
        );
        let message = b"string to sign";
        let signature = pkcs8.sign(&scope(), message).expect("sign");
        // RSASSA-PKCS1-v1_5 is deterministic: the same key gives the same signature.
        assert_eq!(pkcs1.sign(&scope(), message).expect("sign"), signature);
        assert!(pkcs1.verify(&scope(), message, &signature));
        assert!(!pkcs1.verify(&scope(), b"another string", &signature));
    }

    #[test]
    fn hmac_keys_derive_the_v4_signing_key() {
        let key = SigningKey::hmac("GOOG1EXAMPLE", b"test-hmac-secret-0123456789".to_vec());
        assert_eq!(key.algorithm(), "GOOG4-HMAC-SHA256");
        let signature = key.sign(&scope(), b"string to sign").expect("sign");
        // Computed independently: HMAC chain GOOG4+secret -> date -> auto -> storage ->
        // goog4_request, then HMAC of the string to sign (Python's hmac module).
        assert_eq!(
            hex::encode(&signature),
            "17ed1b994a029dd69543c955ddb06600df53b9bc8f5ad466f35af86a0c13a068"
        );
        assert!(key.verify(&scope(), b"string to sign", &signature));
        assert!(!key.verify(&scope(), b"string to sign", &signature[1..]));
    }

    #[test]
    fn unusable_keys_are_refused_with_the_reason() {
        let refused = |json: &[u8]| {
            SigningKey::from_service_account_json(json)
                .expect_err("refused")
                .to_string()
        };
        assert!(refused(b"not json").contains("service account key"));
        assert!(refused(br#"{"client_email": "a@b"}"#).contains("private_key"));
        assert!(
            refused(&account(
                "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n"
            ))
            .contains("private_key")
        );
        assert!(
            refused(&account(EC)).contains("RSA"),
            "{}",
            refused(&account(EC))
        );
        let missing = SigningKey::from_service_account_file(Path::new("/nonexistent/key.json"))
            .expect_err("refused")
            .to_string();
        assert!(missing.contains("/nonexistent/key.json"), "{missing}");
    }
}
