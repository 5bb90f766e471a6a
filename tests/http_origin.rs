//! The edge as a reverse proxy cache in front of an HTTP origin the test scripts: a real
//! server on a port-0 socket that records every request it gets and answers each path
//! as told (status, headers, body, whether it answers `If-None-Match` with 304, and
//! whether it holds back all but the first kilobyte of a body until told). Each test
//! reads the origin's log to show what the cache asked and what it kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use meridian_edge::EdgeState;
use meridian_shared::auth::PurgeSigningKey;
use meridian_shared::config::{EdgeSettings, OutboundSettings};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::harness::{
    binary, free_port, pseudo_random_bytes, scrape, serve_edge_plain, serve_plain,
};

/// How the origin answers one path.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    /// With an ETag among `headers`: a matching `If-None-Match` gets 304 with these
    /// headers.
    not_modified: Option<Vec<(&'static str, String)>>,
    /// Send the first KiB, then wait for the gate.
    held: bool,
    /// Send the body chunked, without Content-Length, in 1 KiB pieces.
    chunked: bool,
}

impl Reply {
    fn ok(body: &str, headers: &[(&'static str, &str)]) -> Reply {
        Reply {
            status: 200,
            headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
            body: Bytes::from(body.to_string()),
            not_modified: None,
            held: false,
            chunked: false,
        }
    }
}

/// One request as the origin saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: HeaderMap,
    body: Bytes,
    status: u16,
}

#[derive(Clone, Default)]
struct Origin {
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    /// Per path and `Accept-Language`, for the Vary test.
    log: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Option<watch::Sender<bool>>>,
}

impl Origin {
    fn new() -> Origin {
        Origin {
            gate: Arc::new(Some(watch::channel(false).0)),
            ..Origin::default()
        }
    }

    fn answer(&self, target: &str, reply: Reply) {
        self.replies
            .lock()
            .expect("lock")
            .insert(target.to_string(), reply);
    }

    fn seen(&self, target: &str) -> Vec<Seen> {
        let log = self.log.lock().expect("lock");
        log.iter().filter(|s| s.target == target).cloned().collect()
    }

    fn open_gate(&self) {
        if let Some(gate) = self.gate.as_ref() {
            gate.send_replace(true);
        }
    }
}

async fn respond(State(origin): State<Origin>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|t| t.as_str().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(body, 1 << 24)
        .await
        .unwrap_or_default();
    let reply = origin.replies.lock().expect("lock").get(&target).cloned();
    let mut seen = Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        headers: parts.headers.clone(),
        body,
        status: 404,
    };
    let Some(reply) = reply else {
        origin.log.lock().expect("lock").push(seen);
        return StatusCode::NOT_FOUND.into_response();
    };
    // Vary test: the body names the language asked for.
    let language = parts
        .headers
        .get("accept-language")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    let etag = reply
        .headers
        .iter()
        .find(|(n, _)| *n == "etag")
        .map(|(_, v)| v.clone());
    let if_none_match = parts
        .headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    if let (Some(extra), Some(etag), Some(asked)) = (&reply.not_modified, &etag, if_none_match)
        && asked == etag
    {
        seen.status = 304;
        origin.log.lock().expect("lock").push(seen);
        let mut headers = HeaderMap::new();
        headers.insert("etag", etag.parse().expect("etag"));
        for (name, value) in extra {
            headers.insert(*name, value.parse().expect("value"));
        }
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    seen.status = reply.status;
    origin.log.lock().expect("lock").push(seen);
    let mut headers = HeaderMap::new();
    for (name, value) in &reply.headers {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    let body = if reply.body.as_ref() == b"{language}" {
        Body::from(format!("in {language}"))
    } else if reply.held {
        let mut gate = origin.gate.as_ref().as_ref().expect("gate").subscribe();
        let whole = reply.body.clone();
        headers.insert("content-length", HeaderValue::from(whole.len()));
        Body::from_stream(async_stream::stream! {
            yield Ok::<_, std::io::Error>(whole.slice(..1024));
            let _ = gate.wait_for(|open| *open).await;
            yield Ok(whole.slice(1024..));
        })
    } else if reply.chunked {
        let pieces: Vec<Result<Bytes, std::io::Error>> = reply
            .body
            .chunks(1024)
            .map(|piece| Ok(Bytes::copy_from_slice(piece)))
            .collect();
        Body::from_stream(futures::stream::iter(pieces))
    } else {
        Body::from(reply.body.clone())
    };
    (
        StatusCode::from_u16(reply.status).expect("status"),
        headers,
        body,
    )
        .into_response()
}

/// The scripted origin, served until `stop`, and its URL.
async fn scripted_origin(stop: &CancellationToken) -> (Origin, String) {
    let origin = Origin::new();
    let router = axum::Router::new()
        .fallback(respond)
        .with_state(origin.clone());
    (origin, serve_plain(router, stop).await)
}

/// An edge in front of `origin_url` with `settings`, taking purges signed by `key`'s
/// private half.
fn edge_state(
    origin_url: &str,
    settings: &EdgeSettings,
    key: Option<&meridian_shared::auth::PurgePublicKey>,
) -> EdgeState {
    EdgeState::for_http_origin(
        "test-region",
        origin_url,
        settings,
        &OutboundSettings::default(),
        key,
    )
    .expect("edge")
}

/// The scripted origin and an edge in front of it (`settings` as given).
async fn edge_before(settings: EdgeSettings, stop: &CancellationToken) -> (Origin, String, String) {
    edge_before_origin_stopping_at(settings, stop, stop).await
}

/// Like [`edge_before`], with the origin served until `origin_stop` (so a test can take
/// the origin down while the edge runs on).
async fn edge_before_origin_stopping_at(
    settings: EdgeSettings,
    stop: &CancellationToken,
    origin_stop: &CancellationToken,
) -> (Origin, String, String) {
    let (origin, origin_url) = scripted_origin(origin_stop).await;
    let key = PurgeSigningKey::generate().expect("key");
    let state = edge_state(&origin_url, &settings, Some(key.public_key()));
    let edge = serve_edge_plain(state, stop).await;
    (origin, origin_url, edge)
}

/// Status, `X-Cache`, `Cache-Status` and body of a GET of `url` with `headers`.
async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String, String, String, HeaderMap) {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("edge answers");
    let status = response.status().as_u16();
    let field = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (x_cache, cache_status) = (field("x-cache"), field("cache-status"));
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    (status, x_cache, cache_status, body, headers)
}

#[tokio::test]
async fn vary_keeps_one_stored_response_per_variant() {
    let stop = CancellationToken::new();
    let (origin, _, edge) = edge_before(EdgeSettings::default(), &stop).await;
    origin.answer(
        "/page",
        Reply::ok(
            "{language}",
            &[
                ("cache-control", "max-age=600"),
                ("vary", "Accept-Language"),
            ],
        ),
    );
    let url = format!("{edge}/page");
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    let (_, x_cache, cache_status, body, _) = get(&url, &en).await;
    assert_eq!((x_cache.as_str(), body.as_str()), ("MISS", "in en"));
    assert_eq!(cache_status, "meridian; fwd=uri-miss; fwd-status=200");
    let (_, x_cache, cache_status, body, _) = get(&url, &fr).await;
    assert_eq!((x_cache.as_str(), body.as_str()), ("MISS", "in fr"));
    assert_eq!(cache_status, "meridian; fwd=vary-miss; fwd-status=200");
    for _ in 0..2 {
        assert_eq!(get(&url, &en).await.1, "HIT");
        assert_eq!(get(&url, &en).await.3, "in en");
        assert_eq!(get(&url, &fr).await.3, "in fr");
    }
    assert_eq!(get(&url, &fr).await.1, "HIT");
    assert_eq!(
        origin.seen("/page").len(),
        2,
        "one origin request per variant"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_304_from_the_origin_refreshes_the_stored_headers_and_freshness() {
    let stop = CancellationToken::new();
    let (origin, _, edge) = edge_before(EdgeSettings::default(), &stop).await;
    let mut reply = Reply::ok(
        "the body",
        &[
            ("cache-control", "no-cache"),
            ("etag", "\"v1\""),
            ("x-note", "first"),
        ],
    );
    reply.not_modified = Some(vec![("x-note", "refreshed".into())]);
    origin.answer("/doc", reply.clone());
    let url = format!("{edge}/doc");
    let (_, x_cache, _, body, headers) = get(&url, &[]).await;
    assert_eq!((x_cache.as_str(), body.as_str()), ("MISS", "the body"));
    assert_eq!(headers["x-note"], "first");
    // no-cache: stored, but every use asks the origin, which answers 304.
    let (status, x_cache, cache_status, body, headers) = get(&url, &[]).await;
    assert_eq!(
        (status, x_cache.as_str(), body.as_str()),
        (200, "REVALIDATED", "the body")
    );
    assert_eq!(cache_status, "meridian; fwd=stale; fwd-status=304");
    assert_eq!(
        headers["x-note"], "refreshed",
        "the 304's headers were merged"
    );
    assert_eq!(headers["etag"], "\"v1\"");
    let seen = origin.seen("/doc");
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [200, 304]
    );
    assert_eq!(seen[1].headers["if-none-match"], "\"v1\"");
    // A 304 that grants freshness makes the copy fresh: then it is a plain hit.
    reply.not_modified = Some(vec![("cache-control", "max-age=600".into())]);
    origin.answer("/doc", reply);
    assert_eq!(get(&url, &[]).await.1, "REVALIDATED");
    let (_, x_cache, _, body, headers) = get(&url, &[]).await;
    assert_eq!((x_cache.as_str(), body.as_str()), ("HIT", "the body"));
    assert_eq!(headers["cache-control"], "max-age=600");
    assert_eq!(origin.seen("/doc").len(), 3);
    // A client's own conditional is answered by the edge from the stored copy.
    let (status, x_cache, _, _, _) = get(&url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((status, x_cache.as_str()), (304, "HIT"));
    assert_eq!(origin.seen("/doc").len(), 3);
    stop.cancel();
}

#[tokio::test]
async fn nothing_is_stored_from_an_http_origin_without_freshness_or_a_validator() {
    let stop = CancellationToken::new();
    let (origin, _, edge) = edge_before(EdgeSettings::default(), &stop).await;
    origin.answer("/plain", Reply::ok("plain", &[]));
    origin.answer(
        "/private",
        Reply::ok("mine", &[("cache-control", "private, max-age=600")]),
    );
    origin.answer(
        "/expires",
        Reply::ok(
            "until later",
            &[(
                "expires",
                &httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600)),
            )],
        ),
    );
    origin.answer(
        "/redirect",
        Reply {
            status: 302,
            headers: vec![("location", "/plain".into())],
            ..Reply::ok("", &[])
        },
    );
    origin.answer(
        "/gone",
        Reply {
            status: 404,
            headers: vec![("cache-control", "max-age=600".into())],
            ..Reply::ok("not here", &[])
        },
    );
    for path in ["/plain", "/private", "/redirect"] {
        for _ in 0..2 {
            let (_, x_cache, cache_status, _, _) = get(&format!("{edge}{path}"), &[]).await;
            assert_eq!(x_cache, "BYPASS", "{path}");
            assert!(
                cache_status.ends_with("detail=not-stored"),
                "{cache_status}"
            );
        }
        assert_eq!(origin.seen(path).len(), 2, "{path} was asked every time");
    }
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{edge}/redirect"))
        .send()
        .await
        .expect("edge answers");
    assert_eq!(
        redirect.status(),
        302,
        "redirects are passed on, not followed"
    );
    assert_eq!(redirect.headers()["location"], "/plain");
    // Explicit freshness (Expires; max-age on a 404) is stored.
    for (path, status, body) in [("/expires", 200, "until later"), ("/gone", 404, "not here")] {
        get(&format!("{edge}{path}"), &[]).await;
        let (answered, x_cache, _, text, _) = get(&format!("{edge}{path}"), &[]).await;
        assert_eq!(
            (answered, x_cache.as_str(), text.as_str()),
            (status, "HIT", body)
        );
        assert_eq!(origin.seen(path).len(), 1, "{path}");
    }
    stop.cancel();
}

#[tokio::test]
async fn requests_with_authorization_are_neither_answered_nor_stored_unless_shareable() {
    let stop = CancellationToken::new();
    let (origin, _, edge) = edge_before(EdgeSettings::default(), &stop).await;
    origin.answer(
        "/me",
        Reply::ok("someone", &[("cache-control", "max-age=600")]),
    );
    let url = format!("{edge}/me");
    let alice = [("authorization", "Bearer alice")];
    for _ in 0..2 {
        assert_eq!(get(&url, &alice).await.1, "BYPASS");
    }
    assert_eq!(
        get(&url, &[]).await.1,
        "MISS",
        "nothing was stored for alice"
    );
    assert_eq!(get(&url, &[]).await.1, "HIT");
    assert_eq!(
        get(&url, &alice).await.1,
        "BYPASS",
        "the shared copy does not answer her"
    );
    assert_eq!(origin.seen("/me").len(), 4);
    assert_eq!(
        origin.seen("/me")[0].headers["authorization"],
        "Bearer alice"
    );
    stop.cancel();
}

#[tokio::test]
async fn unsafe_methods_reach_the_origin_with_their_bodies_and_invalidate_what_they_change() {
    let stop = CancellationToken::new();
    let (origin, _, edge) = edge_before(EdgeSettings::default(), &stop).await;
    origin.answer(
        "/items/1?view=full",
        Reply::ok("item one", &[("cache-control", "max-age=600")]),
    );
    origin.answer(
        "/items",
        Reply::ok("item one", &[("cache-control", "max-age=600")]),
    );
    let item = format!("{edge}/items/1?view=full");
    get(&item, &[]).await;
    assert_eq!(get(&item, &[]).await.1, "HIT");
    get(&format!("{edge}/items"), &[]).await;
    // A POST whose answer points at the item (Location) invalidates both.
    origin.answer(
        "/items",
        Reply {
            status: 201,
            headers: vec![("location", "/items/1?view=full".into())],
            ..Reply::ok("created", &[])
        },
    );
    let posted = reqwest::Client::new()
        .post(format!("{edge}/items"))
        .header("content-type", "text/plain")
        .body("new item")
        .send()
        .await
        .expect("edge answers");
    assert_eq!(posted.status(), 201);
    assert_eq!(
        posted.headers()["cache-status"],
        "meridian; fwd=method; fwd-status=201"
    );
    assert_eq!(posted.text().await.expect("body"), "created");
    let post = origin
        .seen("/items")
        .into_iter()
        .find(|s| s.method == "POST")
        .expect("the POST reached the origin");
    assert_eq!(post.body.as_ref(), b"new item");
    assert_eq!(post.headers["content-type"], "text/plain");
    let (_, x_cache, _, _, _) = get(&item, &[]).await;
    assert_eq!(x_cache, "MISS", "the item was invalidated through Location");
    assert_eq!(origin.seen("/items/1?view=full").len(), 2);
    // A failed unsafe request invalidates nothing.
    origin.answer(
        "/items/1?view=full",
        Reply {
            status: 500,
            ..Reply::ok("broken", &[])
        },
    );
    let deleted = reqwest::Client::new()
        .delete(&item)
        .send()
        .await
        .expect("edge answers");
    assert_eq!(deleted.status(), 500);
    assert_eq!(get(&item, &[]).await.1, "HIT");
    stop.cancel();
}

#[tokio::test]
async fn hop_by_hop_fields_stay_on_their_hop_and_the_edge_says_it_was_there() {
    let stop = CancellationToken::new();
    let (origin, _, edge) = edge_before(EdgeSettings::default(), &stop).await;
    origin.answer(
        "/h",
        Reply::ok(
            "h",
            &[
                ("cache-control", "no-store"),
                ("x-end-to-end", "kept"),
                ("connection", "x-origin-secret"),
                ("x-origin-secret", "dropped"),
            ],
        ),
    );
    let (_, _, _, _, headers) = get(
        &format!("{edge}/h"),
        &[
            ("connection", "x-client-secret"),
            ("x-client-secret", "1"),
            ("x-custom", "passed"),
        ],
    )
    .await;
    assert_eq!(headers["x-end-to-end"], "kept");
    assert!(!headers.contains_key("x-origin-secret"));
    assert_eq!(headers["via"], "1.1 meridian");
    let seen = &origin.seen("/h")[0];
    assert_eq!(seen.headers["x-custom"], "passed");
    assert!(!seen.headers.contains_key("x-client-secret"));
    assert_eq!(seen.headers["via"], "1.1 meridian");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    stop.cancel();
}

#[tokio::test]
async fn a_stale_copy_answers_with_cache_status_saying_so_while_the_origin_fails() {
    let stop = CancellationToken::new();
    let origin_stop = CancellationToken::new();
    let (origin, _, edge) =
        edge_before_origin_stopping_at(EdgeSettings::default(), &stop, &origin_stop).await;
    // Arrives already a minute past its freshness (Age), so no test waits for time.
    origin.answer(
        "/s",
        Reply::ok(
            "stale but useful",
            &[
                ("cache-control", "max-age=60, stale-if-error=600"),
                ("age", "120"),
                ("etag", "\"s1\""),
            ],
        ),
    );
    let url = format!("{edge}/s");
    let (_, x_cache, _, _, headers) = get(&url, &[]).await;
    assert_eq!(x_cache, "MISS");
    assert_eq!(headers["age"], "120", "the age it arrived with");
    origin.answer(
        "/s",
        Reply {
            status: 503,
            ..Reply::ok("down", &[])
        },
    );
    let (status, x_cache, cache_status, body, headers) = get(&url, &[]).await;
    assert_eq!(
        (status, x_cache.as_str(), body.as_str()),
        (200, "STALE", "stale but useful")
    );
    assert_eq!(
        cache_status,
        "meridian; hit; stale; fwd=stale; fwd-status=503; detail=stale-if-error"
    );
    let age: u64 = headers["age"].to_str().expect("age").parse().expect("secs");
    assert!(age >= 120, "Age counts from the origin's Age: {age}");
    // The origin goes away altogether: the stale copy still answers.
    origin_stop.cancel();
    let (status, x_cache, cache_status, body, _) = get(&url, &[]).await;
    assert_eq!(
        (status, x_cache.as_str(), body.as_str()),
        (200, "STALE", "stale but useful")
    );
    assert_eq!(
        cache_status,
        "meridian; hit; stale; fwd=stale; fwd-status=502; detail=stale-if-error"
    );
    // Without a stale copy to fall back on, the failure shows.
    let (status, ..) = get(&format!("{edge}/never-fetched"), &[]).await;
    assert_eq!(status, 502);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_misses_make_one_origin_request_and_ranges_come_from_the_fill() {
    let stop = CancellationToken::new();
    let (origin, _, edge) = edge_before(EdgeSettings::default(), &stop).await;
    let body = pseudo_random_bytes(64 * 1024, 4);
    origin.answer(
        "/big",
        Reply {
            held: true,
            body: Bytes::from(body.clone()),
            ..Reply::ok("", &[("cache-control", "max-age=600")])
        },
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(200)
        .build()
        .expect("client");
    let url = format!("{edge}/big");
    let responses = tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::join_all((0..100).map(|i| {
            let request = http.get(&url);
            // Every tenth asks a range of the first kilobyte: answered from the fill.
            if i % 10 == 0 {
                request.header("range", "bytes=0-99").send()
            } else {
                request.send()
            }
        })),
    )
    .await
    .expect("every miss is answered while the origin holds most of the body");
    let mut streams = Vec::new();
    for (i, response) in responses.into_iter().enumerate() {
        let response = response.expect("edge answers");
        assert_eq!(response.headers()["x-cache"], "MISS");
        if i % 10 == 0 {
            assert_eq!(response.status(), 206);
            let part = tokio::time::timeout(Duration::from_secs(10), response.bytes())
                .await
                .expect("a range of what arrived is sent before the origin finishes")
                .expect("body");
            assert_eq!(part.as_ref(), &body[..100]);
        } else {
            assert_eq!(response.status(), 200);
            streams.push(response.bytes_stream());
        }
    }
    let first = streams[0].next().await.expect("chunk").expect("bytes");
    assert_eq!(first.as_ref(), &body[..first.len()]);
    assert_eq!(
        origin.seen("/big").len(),
        1,
        "one origin request for 100 misses"
    );
    assert!(
        !origin.seen("/big")[0].headers.contains_key("range"),
        "the fill asks for the whole body"
    );
    origin.open_gate();
    for stream in streams {
        let received: Vec<u8> = stream
            .map(|chunk| chunk.expect("chunk"))
            .collect::<Vec<_>>()
            .await
            .concat();
        assert!(
            received == body || body.ends_with(&received),
            "a whole body (or, for the first, the rest of it)"
        );
    }
    let (status, x_cache, _, _, _) = get(&url, &[("range", "bytes=0-0,-1")]).await;
    assert_eq!((status, x_cache.as_str()), (206, "HIT"));
    let refused = reqwest::Client::new()
        .get(&url)
        .header("range", "bytes=99999999-")
        .send()
        .await
        .expect("edge answers");
    assert_eq!(refused.status(), 416);
    stop.cancel();
}

#[tokio::test]
async fn the_edge_binary_proxies_and_caches_any_http_origin_from_its_command_line() {
    let stop = CancellationToken::new();
    let (origin, origin_url) = scripted_origin(&stop).await;
    origin.answer(
        "/hello?x=1",
        Reply::ok("hello", &[("cache-control", "max-age=60")]),
    );
    let data = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut edge = tokio::process::Command::new(binary("meridian-edge"))
        .args(["--origin", &origin_url, "--addr", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .current_dir(data.path())
        .env_remove("MERIDIAN_CONFIG")
        .kill_on_drop(true)
        .spawn()
        .expect("edge starts");
    let url = format!("http://127.0.0.1:{port}/hello?x=1");
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(&url).await {
            answered = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = answered.expect("the edge listens");
    assert_eq!(response.headers()["x-cache"], "MISS");
    assert_eq!(response.text().await.expect("body"), "hello");
    assert_eq!(get(&url, &[]).await.1, "HIT");
    assert_eq!(origin.seen("/hello?x=1").len(), 1);
    let missing = reqwest::get(format!("http://127.0.0.1:{port}/nothing"))
        .await
        .expect("edge answers");
    assert_eq!(missing.status(), 404, "the origin's own 404 passes through");
    edge.kill().await.expect("kill");
    stop.cancel();
}

#[tokio::test]
async fn a_purge_by_prefix_drops_exactly_that_prefix_and_a_purge_of_everything_the_rest() {
    let stop = CancellationToken::new();
    let (origin, origin_url) = scripted_origin(&stop).await;
    let key = PurgeSigningKey::generate().expect("key");
    let state = edge_state(
        &origin_url,
        &EdgeSettings::default(),
        Some(key.public_key()),
    );
    let edge = serve_edge_plain(state, &stop).await;
    let paths = ["/docs/a", "/docs/b/c", "/docsx", "/img/logo"];
    for path in paths {
        origin.answer(path, Reply::ok(path, &[("cache-control", "max-age=600")]));
        get(&format!("{edge}{path}"), &[]).await;
        assert_eq!(get(&format!("{edge}{path}"), &[]).await.1, "HIT");
    }
    let purge = |body: serde_json::Value| {
        let token = key
            .mint("replicate", meridian_shared::auth::unix_now())
            .expect("mint");
        let url = format!("{edge}{}", meridian_shared::api::PURGE_PATH);
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("edge answers")
                .status()
        }
    };
    assert_eq!(purge(serde_json::json!({"prefix": "docs/"})).await, 204);
    let states = |paths: &'static [&'static str]| {
        let edge = edge.clone();
        async move {
            let mut seen = Vec::new();
            for path in paths {
                seen.push(get(&format!("{edge}{path}"), &[]).await.1);
            }
            seen
        }
    };
    assert_eq!(
        states(&["/docs/a", "/docs/b/c", "/docsx", "/img/logo"]).await,
        ["MISS", "MISS", "HIT", "HIT"]
    );
    assert_eq!(purge(serde_json::json!({"prefix": ""})).await, 204);
    assert_eq!(
        states(&["/docsx", "/img/logo"]).await,
        ["MISS", "MISS"],
        "an empty prefix is everything"
    );
    assert_eq!(
        purge(serde_json::json!({"prefix": 7})).await,
        400,
        "a prefix must be a string"
    );
    let unsigned = reqwest::Client::new()
        .post(format!("{edge}{}", meridian_shared::api::PURGE_PATH))
        .json(&serde_json::json!({"prefix": ""}))
        .send()
        .await
        .expect("edge answers");
    assert_eq!(unsigned.status(), 401);
    stop.cancel();
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_requests() {
    let stop = CancellationToken::new();
    let (origin, _, edge) = edge_before(EdgeSettings::default(), &stop).await;
    origin.answer(
        "/m",
        Reply::ok("twelve bytes", &[("cache-control", "max-age=60")]),
    );
    let before = scrape(&format!("{edge}{}", meridian_edge::METRICS_PATH)).await;
    let value =
        |samples: &HashMap<String, f64>, series: &str| samples.get(series).copied().unwrap_or(0.0);
    get(&format!("{edge}/m"), &[]).await;
    for _ in 0..3 {
        get(&format!("{edge}/m"), &[]).await;
    }
    get(&format!("{edge}/absent"), &[]).await;
    let after = scrape(&format!("{edge}{}", meridian_edge::METRICS_PATH)).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        moved(r#"meridian_edge_requests_total{status="200",cache="MISS"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"meridian_edge_requests_total{status="200",cache="HIT"}"#),
        3.0
    );
    assert_eq!(
        moved(r#"meridian_edge_requests_total{status="404",cache="BYPASS"}"#),
        1.0
    );
    assert!(moved("meridian_edge_response_body_bytes_total") >= 48.0);
    assert_eq!(
        moved("meridian_edge_origin_request_duration_seconds_count"),
        2.0
    );
    assert_eq!(
        value(&after, r#"meridian_edge_store_entries{tier="memory"}"#),
        1.0
    );
    assert!(value(&after, r#"meridian_edge_store_bytes{tier="memory"}"#) >= 12.0);
    stop.cancel();
}

#[tokio::test]
async fn metrics_count_the_connections_open_now() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stop = CancellationToken::new();
    let (_origin, origin_url) = scripted_origin(&stop).await;
    let state = edge_state(&origin_url, &EdgeSettings::default(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let edge = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(meridian_edge::run(
        listener,
        None,
        state,
        stop.clone().cancelled_owned(),
    ));
    let open = || async {
        scrape(&format!("{edge}{}", meridian_edge::METRICS_PATH)).await["meridian_edge_open_connections"]
    };
    // Three clients holding a connection each, after one request.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut connection = tokio::net::TcpStream::connect(edge.trim_start_matches("http://"))
            .await
            .expect("connect");
        connection
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: edge\r\n\r\n")
            .await
            .expect("write");
        let mut answer = [0u8; 256];
        let read = connection.read(&mut answer).await.expect("read");
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
        held.push(connection);
    }
    let with_three = open().await;
    assert!(
        with_three >= 4.0,
        "three held and the scrape's own: {with_three}"
    );
    drop(held);
    let mut now = open().await;
    for _ in 0..40 {
        if now <= with_three - 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = open().await;
    }
    assert!(
        now <= with_three - 3.0,
        "closed connections are no longer counted: {now}"
    );
    stop.cancel();
}

#[tokio::test]
async fn healthz_fails_while_the_origin_cannot_be_reached() {
    let stop = CancellationToken::new();
    let origin_stop = CancellationToken::new();
    let (_origin, _, edge) =
        edge_before_origin_stopping_at(EdgeSettings::default(), &stop, &origin_stop).await;
    let health = || async {
        let response = reqwest::get(format!("{edge}/healthz"))
            .await
            .expect("edge answers");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    };
    assert_eq!(health().await, (200, "ok".to_string()));
    origin_stop.cancel();
    // The last look is trusted for 2 s; within a few, the edge says it is cut off.
    let mut seen = health().await;
    for _ in 0..100 {
        if seen.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = health().await;
    }
    assert_eq!(seen.0, 503, "{seen:?}");
    assert!(
        seen.1.contains("the origin cannot be reached"),
        "{}",
        seen.1
    );
    stop.cancel();
}

#[tokio::test]
async fn a_response_of_unknown_length_is_stored_as_it_passes_when_small_enough() {
    let stop = CancellationToken::new();
    let settings = EdgeSettings {
        stream_threshold_bytes: 16 * 1024,
        ..EdgeSettings::default()
    };
    let (origin, _, edge) = edge_before(settings, &stop).await;
    let chunked = |len: usize| Reply {
        chunked: true,
        body: Bytes::from(pseudo_random_bytes(len, 7)),
        ..Reply::ok("", &[("cache-control", "max-age=600")])
    };
    origin.answer("/small", chunked(10 * 1024));
    origin.answer("/large", chunked(40 * 1024));
    let url = format!("{edge}/small");
    let first = reqwest::get(&url).await.expect("edge answers");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "MISS");
    assert_eq!(
        first.headers()["cache-status"],
        "meridian; fwd=uri-miss; fwd-status=200"
    );
    assert!(
        !first.headers().contains_key("content-length"),
        "it came chunked"
    );
    let body = first.bytes().await.expect("body");
    assert_eq!(body.len(), 10 * 1024);
    let again = reqwest::get(&url).await.expect("edge answers");
    assert_eq!(
        again.headers()["x-cache"],
        "HIT",
        "stored once it had all passed"
    );
    assert_eq!(again.headers()["content-length"], "10240");
    assert_eq!(again.bytes().await.expect("body"), body);
    assert_eq!(origin.seen("/small").len(), 1);
    // Past the stream threshold: it passes whole, and is not kept.
    for _ in 0..2 {
        let large = reqwest::get(format!("{edge}/large"))
            .await
            .expect("edge answers");
        assert_eq!(large.bytes().await.expect("body").len(), 40 * 1024);
    }
    assert_eq!(origin.seen("/large").len(), 2);
    stop.cancel();
}
