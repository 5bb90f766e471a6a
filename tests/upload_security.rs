//! What the upload path refuses: signed URLs that are expired, altered, used with
//! another method or for another object (403, nothing written); requests without a
//! valid token (401); names that break the rules (400, nothing outside the data folder).

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use meridian_shared::auth::{self, TokenScope};

use crate::harness::stack::{TestStack, all_files};

const TEXT: &str = "text/plain";

/// Asserts a 403 whose body mentions `reason`, and that `name` was not written.
async fn assert_refused(stack: &TestStack, response: reqwest::Response, reason: &str, name: &str) {
    assert_eq!(response.status(), 403);
    let body = response.text().await.expect("body");
    assert!(
        body.contains(reason),
        "403 body {body:?} should say {reason:?}"
    );
    assert!(
        stack.buckets_holding(name).await.is_empty(),
        "{name} must not be written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_signed_urls_are_refused() {
    let stack = TestStack::start().await;
    // Signed two minutes ago for 60 seconds: expired a minute ago.
    let expired = stack.mint_upload_url("late.txt", TEXT, Utc::now() - TimeDelta::seconds(120));
    let response = stack.upload(&expired, TEXT, b"late".to_vec()).await;
    assert_refused(&stack, response, "expired", "late.txt").await;
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_misused_or_redirected_signed_urls_are_refused() {
    let stack = TestStack::start().await;
    let url = stack.ticket("target.txt", TEXT).await;

    let mut altered = url.clone();
    let last = altered.pop().expect("non-empty");
    altered.push(if last == '0' { '1' } else { '0' });
    let response = stack.upload(&altered, TEXT, b"x".to_vec()).await;
    assert_refused(&stack, response, "signature does not match", "target.txt").await;

    let response = stack
        .http
        .post(&url)
        .header("content-type", TEXT)
        .body("x")
        .send()
        .await
        .expect("answer");
    assert_refused(&stack, response, "signed for PUT, not POST", "target.txt").await;

    let elsewhere = url.replace("/target.txt?", "/other.txt?");
    assert_ne!(elsewhere, url);
    let response = stack.upload(&elsewhere, TEXT, b"x".to_vec()).await;
    assert_refused(&stack, response, "signature does not match", "other.txt").await;

    let response = stack.upload(&url, "application/json", b"x".to_vec()).await;
    assert_refused(&stack, response, "signature does not match", "target.txt").await;

    let unsigned = url.split('?').next().expect("path").to_string();
    let response = stack.upload(&unsigned, TEXT, b"x".to_vec()).await;
    assert_refused(&stack, response, "not a signed URL", "target.txt").await;

    // The genuine URL still works after all that.
    assert_eq!(
        stack.upload(&url, TEXT, b"finally".to_vec()).await.status(),
        200
    );
    assert_eq!(
        stack.buckets_holding("target.txt").await.first(),
        Some(&stack.bucket_names()[0])
    );
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_and_delete_require_a_valid_token() {
    let stack = TestStack::start().await;
    let secret = TestStack::jwt_secret_of(&stack.data_dir());
    let minted = |secret: &[u8], scopes: &[TokenScope], issued: u64| {
        auth::mint(secret, "someone", scopes, issued, Duration::from_secs(60)).expect("mint")
    };
    let bad_tokens = [
        None,
        Some("not-a-jwt".to_string()),
        Some(minted(
            b"a-different-secret-of-enough-length",
            &[TokenScope::Publish],
            auth::unix_now(),
        )),
        Some(minted(
            secret.as_bytes(),
            &[TokenScope::Publish],
            auth::unix_now() - 3600,
        )),
        Some(minted(
            secret.as_bytes(),
            &[TokenScope::Purge],
            auth::unix_now(),
        )),
    ];
    let delete_url = format!("{}/v1/objects/anything", stack.stack.info().delete);
    for token in &bad_tokens {
        let signed = stack.sign("anything", TEXT, token.as_deref()).await;
        assert_eq!(signed.status(), 401, "sign with {token:?}");
        assert_eq!(signed.headers()["www-authenticate"], "Bearer");
        let mut request = stack.http.delete(&delete_url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(
            request.send().await.expect("answer").status(),
            401,
            "delete with {token:?}"
        );
    }
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_are_refused_and_nothing_lands_outside_the_data_folder() {
    let stack = TestStack::start().await;
    let too_long = "n".repeat(1025);
    for name in [
        "../x",
        "a/../../b",
        "nul\0byte",
        too_long.as_str(),
        "",
        "healthz",
        "_meridian/purge",
    ] {
        let response = stack.sign(name, TEXT, Some(&stack.token)).await;
        assert_eq!(response.status(), 400, "sign accepted {name:?}");
        let body = response.text().await.expect("body");
        assert!(body.contains("name"), "{body}");
    }
    assert_eq!(
        stack
            .sign("ok.txt", "not a type", Some(&stack.token))
            .await
            .status(),
        400
    );

    // Even a correctly signed URL for a traversal name (minted here, bypassing sign's
    // checks) is refused by the gateway and writes nothing.
    let sneaky = stack.mint_upload_url("../../../escaped.txt", TEXT, Utc::now());
    let response = stack.upload(&sneaky, TEXT, b"escape".to_vec()).await;
    assert_eq!(response.status(), 400);

    let data_dir = stack.data_dir();
    let outside: Vec<_> = all_files(stack.parent.path())
        .into_iter()
        .filter(|p| !p.starts_with(&data_dir))
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the data folder: {outside:?}"
    );
    assert!(
        all_files(&data_dir)
            .iter()
            .all(|p| !p.to_string_lossy().contains("escaped")),
        "no file is named after the object"
    );
    stack.stack.stop().await;
}
