//! Google Cloud credentials, shared by every client of a Google API (Cloud Storage,
//! Compute Engine): Application Default Credentials, that is a service-account key file
//! (named in the config or by `GOOGLE_APPLICATION_CREDENTIALS`) or, on Cloud Run and
//! Compute Engine, the metadata server; or none, for an emulator or a stand-in.

use std::path::Path;
use std::sync::Arc;

use gcloud_storage::client::google_cloud_auth::credentials::CredentialsFile;
use gcloud_storage::client::google_cloud_auth::project::Config as AuthConfig;
use gcloud_storage::client::google_cloud_auth::token::DefaultTokenSourceProvider;
use token_source::{TokenSource, TokenSourceProvider};

use crate::config::GoogleCredentials;
use crate::error::{Error, Result};

/// Credentials for `scopes`: the key file `key_file` when given, else Application
/// Default Credentials. Fetches a first token now, so a deployment without usable
/// credentials fails at start. `field` names the setting in errors.
pub async fn token_provider(
    key_file: Option<&Path>,
    scopes: &'static [&'static str],
    field: &str,
) -> Result<DefaultTokenSourceProvider> {
    let config = AuthConfig::default().with_scopes(scopes);
    let provider = match key_file {
        Some(path) => {
            let credentials = CredentialsFile::new_from_file(path.display().to_string())
                .await
                .map_err(|e| Error::Config(format!("{field}: {}: {e}", path.display())))?;
            DefaultTokenSourceProvider::new_with_credentials(config, Box::new(credentials)).await
        }
        None => DefaultTokenSourceProvider::new(config).await,
    };
    provider.map_err(|e| {
        Error::Config(format!(
            "no Google Cloud credentials (a key file in {field} or GOOGLE_APPLICATION_CREDENTIALS, or the metadata server on Google Cloud): {e}"
        ))
    })
}

/// Credentials for a client of one Google API: `None` when `credentials` make it
/// anonymous for `endpoint` (an emulator or stand-in, see
/// [`GoogleCredentials::for_endpoint`]), else a token source for `scopes` (see
/// [`token_provider`]).
pub async fn credentials_for(
    credentials: GoogleCredentials,
    endpoint: &str,
    google_endpoint: &str,
    key_file: Option<&Path>,
    scopes: &'static [&'static str],
    field: &str,
) -> Result<Option<Arc<dyn TokenSource>>> {
    if credentials.for_endpoint(endpoint, google_endpoint) == GoogleCredentials::Anonymous {
        return Ok(None);
    }
    Ok(Some(
        token_provider(key_file, scopes, field)
            .await?
            .token_source(),
    ))
}

/// Sends a call to a Google JSON API (with `tokens`' credentials when given) and reads
/// its JSON answer; `what` names the call in errors.
pub async fn call_json<T: serde::de::DeserializeOwned>(
    mut request: reqwest::RequestBuilder,
    tokens: Option<&dyn TokenSource>,
    what: &str,
) -> Result<T> {
    if let Some(tokens) = tokens {
        request = request.header(
            http::header::AUTHORIZATION,
            authorization(tokens, what).await?,
        );
    }
    let response = request
        .send()
        .await
        .map_err(|e| Error::from_http(what.to_string(), e))?;
    if !response.status().is_success() {
        return Err(Error::upstream_msg(format!(
            "{what}: {}",
            response.status()
        )));
    }
    response
        .json()
        .await
        .map_err(|e| Error::from_http(format!("{what}: reading the answer"), e))
}

/// `Bearer <token>` from `tokens`, for a request about `what`.
pub async fn authorization(tokens: &dyn TokenSource, what: &str) -> Result<String> {
    tokens
        .token()
        .await
        .map_err(|e| Error::upstream(format!("{what}: getting credentials"), e))
}
