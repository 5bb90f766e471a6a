//! Bearer JWTs (HS256 with a shared secret): publishers need the `publish` scope to
//! sign uploads and delete objects; the replicator needs `purge` to drop edge copies.

use std::time::Duration;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
}

/// Checks bearer tokens against one secret.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier(HS256)")
    }
}

impl TokenVerifier {
    /// A verifier for tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> TokenVerifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenVerifier {
            key: DecodingKey::from_secret(secret),
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
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| Error::internal("cannot mint token", e))
}

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
}
