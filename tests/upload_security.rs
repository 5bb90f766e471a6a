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
async fn sign_and_delete_require_a_valid_token_with_the_publish_scope() {
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

    // A valid token without the publish scope is authenticated but not allowed.
    let purge_only = minted(secret.as_bytes(), &[TokenScope::Purge], auth::unix_now());
    let signed = stack.sign("anything", TEXT, Some(&purge_only)).await;
    assert_eq!(signed.status(), 403);
    let deleted = stack
        .http
        .delete(&delete_url)
        .bearer_auth(&purge_only)
        .send()
        .await;
    assert_eq!(deleted.expect("answer").status(), 403);
    // The scheme name is case-insensitive.
    let lowercase = stack
        .http
        .post(format!("{}/v1/uploads", stack.stack.info().sign))
        .header("authorization", format!("bearer {}", stack.token))
        .json(&serde_json::json!({"name": "case.txt", "content_type": TEXT}))
        .send()
        .await
        .expect("answer");
    assert_eq!(lowercase.status(), 200);
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

#[tokio::test]
async fn the_gateway_judges_expiry_by_its_clock_to_the_second() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use meridian_cli::gateway::{self, GatewayState};
    use meridian_shared::server::{self, ServeOptions};
    use meridian_shared::signing::{self, SignRequest, SigningKey, UrlStyle};
    use meridian_shared::storage::MemoryBucket;

    let signed_at = Utc::now();
    let offset_seconds = Arc::new(AtomicI64::new(0));
    let clock_offset = offset_seconds.clone();
    let clock: meridian_shared::Clock =
        Arc::new(move || signed_at + TimeDelta::seconds(clock_offset.load(Ordering::SeqCst)));
    let bucket = Arc::new(MemoryBucket::new("main-bucket"));
    let key = Arc::new(SigningKey::hmac("test-id", b"test-secret".to_vec()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = gateway::router(GatewayState::new(key.clone(), bucket.clone(), clock));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(server::serve(
        listener,
        router,
        None,
        ServeOptions::default(),
        stop.clone().cancelled_owned(),
    ));

    let url_for = |object: &str| {
        let request = SignRequest {
            method: "PUT".into(),
            bucket: "main-bucket".into(),
            object: Some(object.into()),
            expires_in: 60,
            timestamp: signed_at,
            headers: Default::default(),
            query: Vec::new(),
            scheme: "http".into(),
            authority: addr.to_string(),
            style: UrlStyle::Path,
        };
        signing::sign_url(&key, &request).expect("sign").url
    };
    let http = reqwest::Client::new();
    offset_seconds.store(59, Ordering::SeqCst);
    let last_second = http
        .put(url_for("in-time"))
        .body("x")
        .send()
        .await
        .expect("answer");
    assert_eq!(last_second.status(), 200, "valid during its 60th second");
    offset_seconds.store(60, Ordering::SeqCst);
    let too_late = http
        .put(url_for("too-late"))
        .body("x")
        .send()
        .await
        .expect("answer");
    assert_eq!(too_late.status(), 403);
    assert!(too_late.text().await.expect("body").contains("expired"));
    offset_seconds.store(-301, Ordering::SeqCst);
    let too_early = http
        .put(url_for("too-early"))
        .body("x")
        .send()
        .await
        .expect("answer");
    assert_eq!(
        too_early.status(),
        403,
        "a URL dated over 5 minutes ahead is not yet valid"
    );
    let names: Vec<String> = meridian_shared::Bucket::list(bucket.as_ref(), "")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["in-time"]);
    stop.cancel();
}
