//! Signing without a key at hand: on Cloud Run a service has no key file, but it may
//! ask the IAM Credentials API to sign bytes as its own service account
//! (`projects/-/serviceAccounts/{email}:signBlob`, with `iam.serviceAccountTokenCreator`
//! on itself). The result is an ordinary `GOOG4-RSA-SHA256` signature by that account's
//! Google-managed key, so the URL verifies like one signed with a key file.

use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use token_source::TokenSource;

use super::{PreparedUrl, SignRequest, SignedUrl, prepare_url};
use crate::config::{GOOGLE_IAM_CREDENTIALS_ENDPOINT, OutboundSettings, SigningConfig};
use crate::error::{Error, Result};

/// The scope signBlob needs.
const IAM_SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/cloud-platform"];

/// Signs V4 URLs through the IAM Credentials API as one service account.
pub struct IamSigner {
    http: reqwest::Client,
    sign_blob_url: String,
    service_account: String,
    tokens: Option<Arc<dyn TokenSource>>,
}

impl std::fmt::Debug for IamSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IamSigner({})", self.service_account)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignBlobResponse {
    signed_blob: String,
}

impl IamSigner {
    /// A signer for `signing.iam_service_account`, authenticated with Application
    /// Default Credentials (anonymous against a stand-in endpoint under `auto`).
    pub async fn from_config(
        signing: &SigningConfig,
        limits: &OutboundSettings,
    ) -> Result<IamSigner> {
        let service_account = signing
            .iam_service_account
            .clone()
            .ok_or_else(|| Error::Config("signing.iam_service_account: not set".into()))?;
        // It goes into a URL path as it is: an e-mail of the usual characters only.
        let plain = |c: char| c.is_ascii_alphanumeric() || "@._-".contains(c);
        if !service_account.contains('@') || !service_account.chars().all(plain) {
            return Err(Error::Config(format!(
                "signing.iam_service_account: {service_account:?} is not a service account e-mail"
            )));
        }
        let tokens = crate::gcp::credentials_for(
            signing.iam_credentials,
            &signing.iam_endpoint,
            GOOGLE_IAM_CREDENTIALS_ENDPOINT,
            signing.iam_credentials_file.as_deref(),
            &IAM_SCOPES,
            "signing.iam_credentials_file",
        )
        .await?;
        Ok(IamSigner {
            http: crate::outbound::client_builder(limits)
                .timeout(limits.request_timeout())
                .build()
                .map_err(|e| Error::internal("building the IAM client", e))?,
            sign_blob_url: format!(
                "{}/v1/projects/-/serviceAccounts/{service_account}:signBlob",
                signing.iam_endpoint.trim_end_matches('/'),
            ),
            service_account,
            tokens,
        })
    }

    /// The service account URLs are signed as (the credential id).
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// Signs `request` as the service account.
    pub async fn sign_url(&self, request: &SignRequest) -> Result<SignedUrl> {
        let prepared: PreparedUrl =
            prepare_url("GOOG4-RSA-SHA256", &self.service_account, request)?;
        let signature = self.sign_blob(prepared.string_to_sign.as_bytes()).await?;
        Ok(prepared.finish(&signature))
    }

    async fn sign_blob(&self, payload: &[u8]) -> Result<Vec<u8>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let request = self
            .http
            .post(&self.sign_blob_url)
            .json(&serde_json::json!({ "payload": b64.encode(payload) }));
        let what = format!("IAM signBlob as {}", self.service_account);
        let answer: SignBlobResponse =
            crate::gcp::call_json(request, self.tokens.as_deref(), &what).await?;
        b64.decode(answer.signed_blob)
            .map_err(|e| Error::upstream("IAM signBlob: signedBlob is not base64", e))
    }
}
