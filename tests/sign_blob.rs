//! Signing without a key file, as on Cloud Run: sign asks a stand-in for the IAM
//! Credentials API (run by the test, named as such) to `signBlob` as its service
//! account. The stand-in signs with Google's dummy service-account key; the URL sign
//! hands out is exactly the one the key file itself would produce, and passes the same
//! verification.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine;
use chrono::{TimeZone, Utc};
use meridian_shared::Config;
use meridian_shared::auth::{self, TokenScope};
use meridian_shared::signing::{self, Scope, SignRequest, SigningKey, UrlStyle, verify_request};
use tokio_util::sync::CancellationToken;

use crate::harness::{serve_plain, testdata};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn dummy_key() -> (SigningKey, String) {
    let json = std::fs::read(testdata(
        "gcs-v4-signing/test_service_account.not-a-test.json",
    ))
    .expect("key file");
    let email = serde_json::from_slice::<serde_json::Value>(&json).expect("json")["client_email"]
        .as_str()
        .expect("email")
        .to_string();
    (
        SigningKey::from_service_account_json(&json).expect("key"),
        email,
    )
}

#[tokio::test]
async fn sign_blob_urls_are_the_key_files_urls() {
    let stop = CancellationToken::new();
    let (key, email) = dummy_key();
    let key = Arc::new(key);

    // Stand-in for iamcredentials.googleapis.com: signs what it is sent with the key.
    let signer = key.clone();
    let expected_path = format!("/v1/projects/-/serviceAccounts/{email}:signBlob");
    let iam = Router::new().fallback(move |uri: Uri, body: String| {
        let (signer, expected_path) = (signer.clone(), expected_path.clone());
        async move {
            if uri.path() != expected_path {
                return (StatusCode::NOT_FOUND, uri.path().to_string()).into_response();
            }
            let b64 = base64::engine::general_purpose::STANDARD;
            let request: serde_json::Value = serde_json::from_str(&body).expect("json");
            let payload = b64
                .decode(request["payload"].as_str().expect("payload"))
                .expect("base64");
            // An RSA signature does not depend on the scope.
            let scope = Scope::new(Utc::now());
            let signature = signer.sign(&scope, &payload).expect("sign");
            axum::Json(
                serde_json::json!({"keyId": "stand-in", "signedBlob": b64.encode(signature)}),
            )
            .into_response()
        }
    });
    let iam_url = serve_plain(iam, &stop).await;

    let mut config = Config::default();
    config.auth.jwt_secret = Some(SECRET.into());
    config.signing.iam_service_account = Some(email.clone());
    config.signing.iam_endpoint = iam_url;
    let signed_at = Utc
        .with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
        .single()
        .expect("time");
    let clock: meridian_shared::Clock = Arc::new(move || signed_at);
    let state = meridian_sign::SignState::from_config(&config, clock)
        .await
        .expect("sign state");
    let sign = serve_plain(meridian_sign::router(state), &stop).await;

    let token = auth::mint(
        SECRET.as_bytes(),
        "publisher",
        &[TokenScope::Publish],
        auth::unix_now(),
        std::time::Duration::from_secs(60),
    )
    .expect("token");
    let ticket: serde_json::Value = reqwest::Client::new()
        .post(format!("{sign}/v1/uploads"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "img/cat.png", "content_type": "image/png"}))
        .send()
        .await
        .expect("sign answers")
        .json()
        .await
        .expect("json");
    let url = ticket["url"].as_str().expect("url").to_string();

    // The very URL the key file signs for the same request.
    let (scheme, authority) = signing::endpoint_parts(&config.signing.endpoint).expect("endpoint");
    let request = SignRequest {
        method: "PUT".into(),
        bucket: config.main().bucket.clone(),
        object: Some("img/cat.png".into()),
        expires_in: config.signing.ttl_seconds,
        timestamp: signed_at,
        headers: BTreeMap::from([("content-type".into(), "image/png".into())]),
        query: Vec::new(),
        scheme,
        authority,
        style: UrlStyle::Path,
    };
    assert_eq!(url, signing::sign_url(&key, &request).expect("sign").url);

    // And it passes the verification a key-file URL passes.
    let parsed = url::Url::parse(&url).expect("url");
    let mut headers = HeaderMap::new();
    headers.insert(
        "host",
        HeaderValue::from_str(parsed.host_str().expect("host")).expect("h"),
    );
    headers.insert("content-type", HeaderValue::from_static("image/png"));
    let verified = verify_request(
        &key,
        "PUT",
        parsed.path(),
        parsed.query().unwrap_or_default(),
        &headers,
        signed_at + chrono::TimeDelta::seconds(30),
    )
    .expect("verifies");
    assert_eq!(verified.object, "img/cat.png");
    stop.cancel();
}
