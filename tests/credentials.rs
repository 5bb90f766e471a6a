//! Cloud Storage credentials, against local stand-ins the test runs (named as such):
//! a token server playing Google's OAuth 2.0 token endpoint, and a storage server
//! that records what it is sent. The GCS backend, given a service-account key file
//! whose `token_uri` points at the stand-in, fetches a token and sends it as
//! `Authorization: Bearer` on its requests, reads and uploads alike.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use meridian_shared::config::{GoogleCredentials, OutboundSettings, StorageConfig};
use meridian_shared::storage::{GcsClient, PutOptions, stream_from_bytes};
use meridian_shared::{Bucket, Error, ObjectName};
use tokio_util::sync::CancellationToken;

use crate::harness::{serve_plain, testdata};

const TOKEN: &str = "stand-in-access-token";

/// What the stand-ins saw: token requests' grant types, storage requests' paths and
/// `Authorization` headers.
#[derive(Default)]
struct Seen {
    grants: Vec<String>,
    storage: Vec<(String, Option<String>)>,
}

#[tokio::test]
async fn a_key_files_token_is_sent_on_every_storage_request() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = CancellationToken::new();

    // Stand-in for Google's OAuth 2.0 token endpoint.
    let token_seen = seen.clone();
    let token_server = Router::new().route(
        "/token",
        post(move |body: String| {
            let seen = token_seen.clone();
            async move {
                let grant = body
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("grant_type="))
                    .unwrap_or_default()
                    .to_string();
                seen.lock().expect("lock").grants.push(grant);
                axum::Json(serde_json::json!({
                    "access_token": TOKEN,
                    "token_type": "Bearer",
                    "expires_in": 3600
                }))
            }
        }),
    );
    let token_url = serve_plain(token_server, &stop).await;

    // Stand-in for Cloud Storage: records and answers "not found".
    let storage_seen = seen.clone();
    let storage_server = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let seen = storage_seen.clone();
        async move {
            let authorization = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            seen.lock()
                .expect("lock")
                .storage
                .push((uri.path().to_string(), authorization));
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": {"code": 404, "message": "Not Found"}})),
            )
        }
    });
    let storage_url = serve_plain(storage_server, &stop).await;

    // Google's dummy service-account key, pointed at the stand-in token endpoint.
    let mut key: serde_json::Value = serde_json::from_slice(
        &std::fs::read(testdata(
            "gcs-v4-signing/test_service_account.not-a-test.json",
        ))
        .expect("key"),
    )
    .expect("json");
    key["token_uri"] = format!("{token_url}/token").into();
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, key.to_string()).expect("write");

    let storage = StorageConfig {
        gcs_endpoint: storage_url,
        gcs_credentials: GoogleCredentials::ApplicationDefault,
        gcs_credentials_file: Some(key_file),
        ..StorageConfig::default()
    };
    let bucket = GcsClient::from_config(&storage, &OutboundSettings::default())
        .await
        .expect("credentials")
        .bucket("meridian-test");
    let name = ObjectName::new("a.txt").expect("name");
    assert!(matches!(bucket.head(&name).await, Err(Error::NotFound(_))));
    assert!(
        bucket
            .put(&name, stream_from_bytes("x"), PutOptions::default())
            .await
            .is_err(),
        "the stand-in refuses the upload"
    );

    let seen = seen.lock().expect("lock");
    assert!(
        seen.grants.iter().any(|g| g.contains("jwt-bearer")),
        "a token was fetched with the key's signed assertion: {:?}",
        seen.grants
    );
    let paths: Vec<&str> = seen.storage.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/storage/v1/b/meridian-test/o/")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/upload/storage/v1/b/meridian-test/o")),
        "{paths:?}"
    );
    for (path, authorization) in &seen.storage {
        assert_eq!(
            authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{path}"
        );
    }
    stop.cancel();
}

#[tokio::test]
async fn an_emulator_endpoint_gets_no_credentials() {
    let storage = StorageConfig {
        gcs_endpoint: "http://127.0.0.1:9".into(),
        ..StorageConfig::default()
    };
    assert_eq!(
        storage.effective_gcs_credentials(),
        GoogleCredentials::Anonymous
    );
    // No key file, no metadata server here: an anonymous client still builds.
    assert!(
        GcsClient::from_config(&storage, &OutboundSettings::default())
            .await
            .is_ok()
    );
}
