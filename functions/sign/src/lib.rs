//! sign: hands an authorised publisher a V4 signed URL to PUT one object into the
//! main bucket.
//!
//! `POST /v1/uploads {name, content_type}` with a bearer token of scope `publish`
//! answers `{url, method: "PUT", headers, expires_at}`. The content type is a signed
//! header, so the upload must carry exactly that `Content-Type`.
//!
//! # Layout
//! - `request`: parsing and validating the request body.
//! - this file: state, router and the handler.

mod request;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::TimeDelta;
use meridian_shared::api::UploadTicket;
use meridian_shared::auth::{TokenScope, TokenVerifier};
use meridian_shared::signing::{self, IamSigner, SignRequest, SigningKey, UrlStyle};
use meridian_shared::{Clock, Config, Error, Result};

pub use request::UploadRequest;

/// How sign signs: with a key it holds, or through IAM signBlob.
enum Signer {
    Key(SigningKey),
    Iam(IamSigner),
}

impl Signer {
    async fn sign_url(&self, request: &SignRequest) -> Result<signing::SignedUrl> {
        match self {
            Signer::Key(key) => signing::sign_url(key, request),
            Signer::Iam(iam) => iam.sign_url(request).await,
        }
    }
}

/// Shared state of the sign service.
#[derive(Clone)]
pub struct SignState {
    signer: Arc<Signer>,
    tokens: TokenVerifier,
    bucket: String,
    scheme: String,
    authority: String,
    ttl_seconds: u64,
    clock: Clock,
}

impl SignState {
    /// State from a config: the signing key (or IAM service account) it names, the
    /// main bucket, the endpoint.
    pub async fn from_config(config: &Config, clock: Clock) -> Result<SignState> {
        let signing = &config.signing;
        let signer = match (
            &signing.hmac_access_id,
            &signing.service_account_file,
            &signing.iam_service_account,
        ) {
            (Some(access_id), _, _) => {
                Signer::Key(SigningKey::hmac(access_id.clone(), signing.hmac_secret()?))
            }
            (None, Some(path), _) => Signer::Key(SigningKey::from_service_account_file(path)?),
            (None, None, Some(_)) => {
                Signer::Iam(IamSigner::from_config(signing, &config.outbound).await?)
            }
            (None, None, None) => {
                return Err(Error::Config(
                    "signing: set hmac_access_id (and hmac_secret), service_account_file or iam_service_account".into(),
                ));
            }
        };
        let (scheme, authority) = signing::endpoint_parts(&config.signing.endpoint)?;
        Ok(SignState {
            signer: Arc::new(signer),
            tokens: TokenVerifier::new(&config.auth.secret()?),
            bucket: config.main().bucket.clone(),
            scheme,
            authority,
            ttl_seconds: config.signing.ttl_seconds,
            clock,
        })
    }
}

/// Largest request body taken: a name of at most 1024 bytes and a content type.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// The sign router: `POST /v1/uploads`, `GET /healthz`.
pub fn router(state: SignState) -> Router {
    Router::new()
        .route("/v1/uploads", post(create_upload))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn create_upload(
    State(state): State<SignState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadTicket>> {
    // The token first: nothing of the body is read for a caller without one.
    let claims = state.tokens.authorize(&headers, TokenScope::Publish)?;
    let body = meridian_shared::body::read_limited(body, MAX_REQUEST_BYTES).await?;
    let upload = UploadRequest::parse(&body)?;
    let now = (state.clock)();
    let signed_headers =
        BTreeMap::from([("content-type".to_string(), upload.content_type.clone())]);
    let signed = state
        .signer
        .sign_url(&SignRequest {
            method: "PUT".into(),
            bucket: state.bucket.clone(),
            object: Some(upload.name.to_string()),
            expires_in: state.ttl_seconds,
            timestamp: now,
            headers: signed_headers.clone(),
            query: Vec::new(),
            scheme: state.scheme.clone(),
            authority: state.authority.clone(),
            style: UrlStyle::Path,
        })
        .await?;
    tracing::info!(subject = %claims.sub, object = %upload.name, "signed upload URL");
    Ok(Json(UploadTicket {
        url: signed.url,
        method: "PUT".to_string(),
        headers: signed_headers,
        expires_at: now + TimeDelta::seconds(state.ttl_seconds as i64),
    }))
}
