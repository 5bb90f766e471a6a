//! What the upload path refuses: signed URLs that are expired (400 `ExpiredToken`),
//! altered, used with another method or for another object (403
//! `SignatureDoesNotMatch`), all as Cloud Storage's XML error documents with nothing
//! written; requests without a valid token (401); names that break the rules (400,
//! nothing outside the data folder). And what the gateway answers a good upload.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use meridian_shared::auth::{self, TokenScope};

use crate::harness::stack::{TestStack, all_files};

const TEXT: &str = "text/plain";
const EXPIRED: (u16, &str) = (400, "ExpiredToken");
const MISMATCH: (u16, &str) = (403, "SignatureDoesNotMatch");
const DENIED: (u16, &str) = (403, "AccessDenied");

/// Asserts Cloud Storage's XML error with `status` and `code` whose details mention
/// `reason`, and that `name` was not written.
async fn assert_refused(
    stack: &TestStack,
    response: reqwest::Response,
    (status, code): (u16, &str),
    reason: &str,
    name: &str,
) {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/xml; charset=UTF-8"
    );
    let body = response.text().await.expect("body");
    assert!(
        body.starts_with("<?xml version='1.0' encoding='UTF-8'?><Error><Code>"),
        "{body}"
    );
    assert!(body.contains(&format!("<Code>{code}</Code>")), "{body}");
    let details = body
        .split("<Details>")
        .nth(1)
        .and_then(|rest| rest.split("</Details>").next())
        .unwrap_or_default();
    assert!(
        details.contains(reason),
        "details of {body:?} should say {reason:?}"
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
    assert_refused(&stack, response, EXPIRED, "expired", "late.txt").await;
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
    assert_refused(
        &stack,
        response,
        MISMATCH,
        "signature does not match",
        "target.txt",
    )
    .await;

    let response = stack
        .http
        .post(&url)
        .header("content-type", TEXT)
        .body("x")
        .send()
        .await
        .expect("answer");
    assert_refused(
        &stack,
        response,
        MISMATCH,
        "signed for PUT, not POST",
        "target.txt",
    )
    .await;

    let elsewhere = url.replace("/target.txt?", "/other.txt?");
    assert_ne!(elsewhere, url);
    let response = stack.upload(&elsewhere, TEXT, b"x".to_vec()).await;
    assert_refused(
        &stack,
        response,
        MISMATCH,
        "signature does not match",
        "other.txt",
    )
    .await;

    let response = stack.upload(&url, "application/json", b"x".to_vec()).await;
    assert_refused(
        &stack,
        response,
        MISMATCH,
        "signature does not match",
        "target.txt",
    )
    .await;

    let unsigned = url.split('?').next().expect("path").to_string();
    let response = stack.upload(&unsigned, TEXT, b"x".to_vec()).await;
    assert_refused(&stack, response, DENIED, "not a signed URL", "target.txt").await;

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
    assert_eq!(too_late.status(), 400);
    let body = too_late.text().await.expect("body");
    assert!(body.contains("<Code>ExpiredToken</Code>"), "{body}");
    assert!(body.contains("expired"), "{body}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_upload_is_answered_as_cloud_storage_answers_it() {
    use base64::Engine;
    let stack = TestStack::start().await;
    let url = stack.ticket("answered.txt", TEXT).await;
    let payload = b"hello, world\n".to_vec();
    let response = stack.upload(&url, TEXT, payload.clone()).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(response.bytes().await.expect("body").len(), 0, "empty body");

    let name = meridian_shared::ObjectName::new("answered.txt").expect("name");
    let main = stack.main_bucket().await;
    let stored = meridian_shared::Bucket::head(&main, &name)
        .await
        .expect("stored");
    let b64 = base64::engine::general_purpose::STANDARD;
    let crc32c = b64.encode(crc32c::crc32c(&payload).to_be_bytes());
    assert_eq!(headers["etag"], stored.etag());
    assert_eq!(headers["x-goog-generation"], stored.generation.to_string());
    assert_eq!(headers["x-goog-stored-content-length"], "13");
    let hashes: Vec<&str> = headers
        .get_all("x-goog-hash")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(
        hashes,
        [
            format!("crc32c={crc32c}"),
            format!("md5={}", stored.md5_hash)
        ]
    );
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meridian_put_reads_cloud_storages_answer() {
    let stack = TestStack::start().await;
    let file = stack.parent.path().join("report.txt");
    std::fs::write(&file, b"reported\n").expect("write");
    let client = meridian_cli::client::Client::connect(&stack.data_dir(), Default::default())
        .await
        .expect("connect");
    let report = meridian_cli::client::put(&client, &file, Some("reports/one.txt"))
        .await
        .expect("put");
    let main = stack.main_bucket().await;
    let stored = meridian_shared::Bucket::head(
        &main,
        &meridian_shared::ObjectName::new("reports/one.txt").expect("name"),
    )
    .await
    .expect("stored");
    assert_eq!(report.generation, stored.generation);
    assert_eq!(report.size, 9);
    assert_eq!(report.md5_hash, stored.md5_hash);
    assert!(report.crc32c.is_some());
    assert_eq!(report.content_type, "text/plain");
    stack.stack.stop().await;
}

/// Sends raw bytes to the stack's gateway over one TCP connection, closes the sending
/// half when `stop_sending` (a client giving up mid-request), and returns everything
/// the gateway answered.
async fn raw_gateway_exchange(stack: &TestStack, request: &[u8], stop_sending: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = stack
        .stack
        .info()
        .gateway
        .trim_start_matches("http://")
        .to_string();
    let mut socket = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect");
    socket.write_all(request).await.expect("write");
    if stop_sending {
        socket.shutdown().await.expect("half-close");
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("the gateway answers")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_mid_upload_gets_a_4xx_and_nothing_is_written() {
    let stack = TestStack::start().await;
    let url = url::Url::parse(&stack.ticket("half.txt", TEXT).await).expect("url");
    let target = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let request = format!(
        "PUT {target} HTTP/1.1\r\nhost: {}\r\ncontent-type: {TEXT}\r\ncontent-length: 1000\r\n\r\nonly ten b",
        url.host_str().expect("host")
    );
    let answer = raw_gateway_exchange(&stack, request.as_bytes(), true).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>IncompleteBody</Code>"), "{answer}");
    assert!(stack.buckets_holding("half.txt").await.is_empty());
    let staging = stack
        .stack
        .config()
        .storage
        .root
        .join(&stack.bucket_names()[0])
        .join("tmp");
    assert_eq!(std::fs::read_dir(staging).expect("tmp").count(), 0);
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_naming_two_hosts_are_refused() {
    let stack = TestStack::start().await;
    let url = url::Url::parse(&stack.ticket("hosts.txt", TEXT).await).expect("url");
    let target = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let host = url.host_str().expect("host");
    for hosts in [
        format!("host: {host}\r\nhost: evil.example\r\n"),
        format!("host: {host}, evil.example\r\n"),
    ] {
        let request = format!(
            "PUT {target} HTTP/1.1\r\n{hosts}content-type: {TEXT}\r\nconnection: close\r\ncontent-length: 1\r\n\r\nx"
        );
        let answer = raw_gateway_exchange(&stack, request.as_bytes(), false).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("<Code>InvalidArgument</Code>"), "{answer}");
    }
    assert!(stack.buckets_holding("hosts.txt").await.is_empty());
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_checks_the_token_before_it_reads_a_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = TestStack::start().await;
    let authority = stack
        .stack
        .info()
        .sign
        .trim_start_matches("http://")
        .to_string();
    // Announces a 1 MiB body, sends `sent` bytes of it, and reads the answer.
    let ask = |authorization: String, sent: usize| {
        let authority = authority.clone();
        async move {
            let mut socket = tokio::net::TcpStream::connect(&authority)
                .await
                .expect("connect");
            let head = format!(
                "POST /v1/uploads HTTP/1.1\r\nhost: {authority}\r\n{authorization}content-type: application/json\r\ncontent-length: 1048576\r\n\r\n"
            );
            socket.write_all(head.as_bytes()).await.expect("write");
            socket.write_all(&vec![b' '; sent]).await.expect("write");
            let mut answer = vec![0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
                .await
                .expect("answered without the rest of the body")
                .expect("read");
            String::from_utf8_lossy(&answer[..read]).into_owned()
        }
    };
    let anonymous = ask(String::new(), 0).await;
    assert!(
        anonymous.starts_with("HTTP/1.1 401"),
        "refused on its headers alone: {anonymous}"
    );
    let publisher = ask(
        format!("authorization: Bearer {}\r\n", stack.token),
        16 * 1024,
    )
    .await;
    assert!(
        publisher.starts_with("HTTP/1.1 413"),
        "even a publisher's body is bounded: {publisher}"
    );
    stack.stack.stop().await;
}
