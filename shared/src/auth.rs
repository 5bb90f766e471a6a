//! Bearer JWTs. Publishers hold HS256 tokens with the `publish` scope (shared secret)
//! to sign uploads and delete objects. Purges use a credential of their own: EdDSA
//! (Ed25519) tokens with the `purge` scope for the edge audience, valid a minute,
//! signed by the replicator's private key. Edges hold only the public key, so nothing
//! taken from an edge can mint a token of either kind.

use std::time::Duration;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use base64::Engine;

use crate::error::{Error, Result};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// Sign uploads and delete objects.
    Publish,
    /// Drop objects from edge caches.
    Purge,
}

impl TokenScope {
    /// The scope's spelling in tokens.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenScope::Publish => "publish",
            TokenScope::Purge => "purge",
        }
    }
}

/// The claims Meridian reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token is for.
    pub sub: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issue time, seconds since the epoch.
    pub iat: u64,
    /// Not valid before, seconds since the epoch (checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Audience: who the token is for (purge tokens: [`EDGE_AUDIENCE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// The audience of purge tokens: edges accept no other, and nothing else accepts it.
pub const EDGE_AUDIENCE: &str = "meridian-edge";

/// How long a purge token is valid: purges are sent right after they are minted.
pub const PURGE_TOKEN_TTL: Duration = Duration::from_secs(60);

/// Checks bearer tokens of one kind: publish tokens (HS256, shared secret) or purge
/// tokens (EdDSA, the replicator's public key, edge audience).
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenVerifier({:?})", self.validation.algorithms)
    }
}

impl TokenVerifier {
    /// A verifier for publish tokens signed with `secret` (HS256).
    pub fn new(secret: &[u8]) -> TokenVerifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenVerifier {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A verifier for purge tokens: EdDSA signatures by the private half of `key`,
    /// for [`EDGE_AUDIENCE`] only.
    pub fn for_purges(key: &PurgePublicKey) -> TokenVerifier {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.set_audience(&[EDGE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        TokenVerifier {
            key: DecodingKey::from_ed_der(&key.0),
            validation,
        }
    }

    /// Checks the `Authorization: Bearer` header and the scope. A missing or invalid
    /// token is [`Error::Unauthorized`]; a valid one without the scope is
    /// [`Error::Forbidden`]. Both say what was wrong.
    pub fn authorize(&self, headers: &HeaderMap, scope: TokenScope) -> Result<Claims> {
        let header = headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| Error::Unauthorized("missing Authorization: Bearer token".into()))?;
        // The scheme name is case-insensitive (RFC 7235).
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthorized("Authorization must be 'Bearer <token>'".into()))?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                Error::Unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired".into(),
                    ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
                    ErrorKind::InvalidSignature => "token signature is invalid".into(),
                    ErrorKind::InvalidAlgorithm => {
                        "token is not of the kind this endpoint takes".into()
                    }
                    ErrorKind::InvalidAudience => "token is for another audience".into(),
                    _ => format!("malformed token: {e}"),
                })
            })?
            .claims;
        if !claims.scope.split(' ').any(|s| s == scope.as_str()) {
            // Authenticated but not allowed: 403 (RFC 6750 insufficient_scope).
            return Err(Error::Forbidden(format!(
                "token lacks the {:?} scope",
                scope.as_str()
            )));
        }
        Ok(claims)
    }
}

/// Mints a token for `subject` with `scopes`, valid for `ttl` from `now_unix`.
pub fn mint(
    secret: &[u8],
    subject: &str,
    scopes: &[TokenScope],
    now_unix: u64,
    ttl: Duration,
) -> Result<String> {
    let claims = Claims {
        sub: subject.to_string(),
        scope: scopes
            .iter()
            .map(TokenScope::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        iat: now_unix,
        exp: now_unix + ttl.as_secs(),
        nbf: None,
        aud: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| Error::internal("cannot mint token", e))
}

/// The replicator's purge-signing key (Ed25519). Its public half goes to edges.
pub struct PurgeSigningKey {
    pkcs8: Vec<u8>,
    public: PurgePublicKey,
}

impl std::fmt::Debug for PurgeSigningKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PurgeSigningKey(public {})", self.public.to_base64())
    }
}

impl PurgeSigningKey {
    /// A new random key.
    pub fn generate() -> Result<PurgeSigningKey> {
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .map_err(|_| Error::internal_msg("no randomness available"))?;
        PurgeSigningKey::from_pkcs8(pkcs8.as_ref())
    }

    /// A key from its PKCS#8 document (v1 or v2), base64.
    pub fn from_base64(text: &str) -> Result<PurgeSigningKey> {
        let der = BASE64
            .decode(text.trim())
            .map_err(|e| Error::Config(format!("auth.purge_private_key: not base64: {e}")))?;
        PurgeSigningKey::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> Result<PurgeSigningKey> {
        let pair =
            ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| {
                Error::Config(format!(
                    "auth.purge_private_key: not an Ed25519 PKCS#8 key: {e}"
                ))
            })?;
        let mut public = [0u8; 32];
        public.copy_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
        Ok(PurgeSigningKey {
            pkcs8: der.to_vec(),
            public: PurgePublicKey(public),
        })
    }

    /// The PKCS#8 document, base64 (how it is stored).
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.pkcs8)
    }

    /// The public half, for edges.
    pub fn public_key(&self) -> &PurgePublicKey {
        &self.public
    }

    /// A purge token for `subject`, valid [`PURGE_TOKEN_TTL`] from `now_unix`.
    pub fn mint(&self, subject: &str, now_unix: u64) -> Result<String> {
        self.sign_claims(&Claims {
            sub: subject.to_string(),
            scope: TokenScope::Purge.as_str().to_string(),
            iat: now_unix,
            exp: now_unix + PURGE_TOKEN_TTL.as_secs(),
            nbf: None,
            aud: Some(EDGE_AUDIENCE.to_string()),
        })
    }

    /// Signs any claims with this key (tests use it to make tokens edges must refuse).
    pub fn sign_claims(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            claims,
            &EncodingKey::from_ed_der(&self.pkcs8),
        )
        .map_err(|e| Error::internal("cannot sign a purge token", e))
    }
}

/// The public half of the purge-signing key: what edges verify purge tokens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgePublicKey([u8; 32]);

impl PurgePublicKey {
    /// A key from its 32 bytes, base64.
    pub fn from_base64(text: &str) -> Result<PurgePublicKey> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| Error::Config(format!("auth.purge_public_key: not base64: {e}")))?;
        let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            Error::Config(format!(
                "auth.purge_public_key: an Ed25519 public key is 32 bytes, not {}",
                bytes.len()
            ))
        })?;
        Ok(PurgePublicKey(key))
    }

    /// Its 32 bytes, base64.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
}

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A fresh random secret (32 bytes, hex), for local stacks that make their own keys.
pub fn generate_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::internal_msg("no randomness available"))?;
    Ok(hex::encode(bytes))
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        headers
    }

    #[test]
    fn a_valid_token_with_the_scope_is_accepted() {
        let token = mint(
            SECRET,
            "alice",
            &[TokenScope::Publish],
            unix_now(),
            Duration::from_secs(60),
        )
        .expect("mint");
        let claims = TokenVerifier::new(SECRET)
            .authorize(&bearer(&token), TokenScope::Publish)
            .expect("ok");
        assert_eq!(claims.sub, "alice");
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let verifier = TokenVerifier::new(SECRET);
        let reason = |headers: HeaderMap, scope| {
            verifier
                .authorize(&headers, scope)
                .expect_err("refused")
                .to_string()
        };
        assert!(reason(HeaderMap::new(), TokenScope::Publish).contains("missing"));
        assert!(reason(bearer("not.a.jwt"), TokenScope::Publish).contains("malformed"));
        let other = mint(
            b"another-secret-another-secret!!",
            "a",
            &[TokenScope::Publish],
            unix_now(),
            Duration::from_secs(60),
        )
        .expect("mint");
        assert!(reason(bearer(&other), TokenScope::Publish).contains("signature"));
        let expired = mint(
            SECRET,
            "a",
            &[TokenScope::Publish],
            unix_now() - 3600,
            Duration::from_secs(60),
        )
        .expect("mint");
        assert!(reason(bearer(&expired), TokenScope::Publish).contains("expired"));
        let later = Claims {
            sub: "a".into(),
            scope: "publish".into(),
            iat: unix_now(),
            exp: unix_now() + 7200,
            nbf: Some(unix_now() + 3600),
            aud: None,
        };
        let not_yet = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &later,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        assert!(reason(bearer(&not_yet), TokenScope::Publish).contains("not valid yet"));
        let purge_only = mint(
            SECRET,
            "a",
            &[TokenScope::Purge],
            unix_now(),
            Duration::from_secs(60),
        )
        .expect("mint");
        let refused = TokenVerifier::new(SECRET)
            .authorize(&bearer(&purge_only), TokenScope::Publish)
            .expect_err("refused");
        assert!(matches!(refused, Error::Forbidden(_)), "{refused}");
        assert!(refused.to_string().contains("scope"));
    }

    #[test]
    fn purge_tokens_verify_with_the_public_key_only() {
        let key = PurgeSigningKey::generate().expect("key");
        let again = PurgeSigningKey::from_base64(&key.to_base64()).expect("reload");
        assert_eq!(again.public_key(), key.public_key());
        let public = PurgePublicKey::from_base64(&key.public_key().to_base64()).expect("public");
        let edges = TokenVerifier::for_purges(&public);
        let token = key.mint("replicate", unix_now()).expect("mint");
        let claims = edges
            .authorize(&bearer(&token), TokenScope::Purge)
            .expect("accepted");
        assert_eq!(claims.aud.as_deref(), Some(EDGE_AUDIENCE));
        assert!(claims.exp - claims.iat <= 60, "short-lived");

        // Another key's token, an expired one, a publish token: all refused.
        let stranger = PurgeSigningKey::generate().expect("key");
        let forged = stranger.mint("replicate", unix_now()).expect("mint");
        assert!(
            edges
                .authorize(&bearer(&forged), TokenScope::Purge)
                .is_err()
        );
        let old = key.mint("replicate", unix_now() - 3600).expect("mint");
        let expired = edges
            .authorize(&bearer(&old), TokenScope::Purge)
            .expect_err("expired");
        assert!(expired.to_string().contains("expired"), "{expired}");
        let publish = mint(
            SECRET,
            "alice",
            &[TokenScope::Publish, TokenScope::Purge],
            unix_now(),
            Duration::from_secs(60),
        )
        .expect("mint");
        let refused = edges
            .authorize(&bearer(&publish), TokenScope::Purge)
            .expect_err("a publish token is not a purge token");
        assert!(matches!(refused, Error::Unauthorized(_)), "{refused}");
        // And a purge token is no publish token.
        assert!(
            TokenVerifier::new(SECRET)
                .authorize(&bearer(&token), TokenScope::Publish)
                .is_err()
        );
    }

    #[test]
    fn purge_tokens_for_another_audience_are_refused() {
        let key = PurgeSigningKey::generate().expect("key");
        let claims = Claims {
            sub: "replicate".into(),
            scope: "purge".into(),
            iat: unix_now(),
            exp: unix_now() + 60,
            nbf: None,
            aud: Some("someone-else".into()),
        };
        let token = key.sign_claims(&claims).expect("sign");
        let refused = TokenVerifier::for_purges(key.public_key())
            .authorize(&bearer(&token), TokenScope::Purge)
            .expect_err("refused");
        assert!(refused.to_string().contains("audience"), "{refused}");
    }

    #[test]
    fn malformed_purge_keys_are_refused_with_the_field() {
        assert!(
            PurgeSigningKey::from_base64("not base64!")
                .expect_err("refused")
                .to_string()
                .contains("auth.purge_private_key")
        );
        assert!(
            PurgePublicKey::from_base64(&BASE64.encode([0u8; 31]))
                .expect_err("refused")
                .to_string()
                .contains("32 bytes")
        );
    }
}
