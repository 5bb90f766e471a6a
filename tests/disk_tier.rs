//! The edge's disk tier across restarts, in front of an origin the test runs (a real
//! server on a port-0 socket that counts what it is asked and answers `If-None-Match`
//! with 304). An edge is "restarted" by dropping it and building a new one on the same
//! directory, as a new process would; purges reach it over the Pub/Sub emulator, or
//! over HTTP.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meridian_cli::emulators::PubSubEmulator;
use meridian_edge::{EdgeState, InvalidationListener};
use meridian_shared::auth::PurgeSigningKey;
use meridian_shared::config::{EdgeSettings, InvalidationTransport, OutboundSettings};
use meridian_shared::{Config, pubsub};
use tokio_util::sync::CancellationToken;

use crate::harness::{binary, free_port, scrape, serve_edge_plain, serve_plain};

/// An origin that serves each path's current body with an ETag and an hour of
/// freshness, and logs every request with whether it was conditional.
#[derive(Clone, Default)]
struct Origin {
    bodies: Arc<Mutex<HashMap<String, String>>>,
    log: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Origin {
    async fn start(stop: &CancellationToken) -> (Origin, String) {
        let origin = Origin::default();
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(origin.clone());
        let url = serve_plain(router, stop).await;
        (origin, url)
    }

    fn set(&self, path: &str, body: &str) {
        let mut bodies = self.bodies.lock().expect("lock");
        bodies.insert(path.to_string(), body.to_string());
    }

    /// The requests for `path` so far: `true` for each conditional one.
    fn asked(&self, path: &str) -> Vec<bool> {
        let log = self.log.lock().expect("lock");
        log.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, conditional)| *conditional)
            .collect()
    }
}

async fn answer(State(origin): State<Origin>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let conditional = request.headers().get(header::IF_NONE_MATCH).cloned();
    origin
        .log
        .lock()
        .expect("lock")
        .push((path.clone(), conditional.is_some()));
    let Some(mut body) = origin.bodies.lock().expect("lock").get(&path).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Under /vary/, one variant per Accept-Language.
    let varies = path.starts_with("/vary/");
    if varies {
        let language = request.headers().get(header::ACCEPT_LANGUAGE);
        let language = language.and_then(|l| l.to_str().ok()).unwrap_or("none");
        body = format!("{body} ({language})");
    }
    let etag = format!(
        "\"{}\"",
        body.len() * 31 + body.bytes().map(usize::from).sum::<usize>()
    );
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag.parse().expect("etag"));
    headers.insert(header::CACHE_CONTROL, "max-age=3600".parse().expect("cc"));
    if varies {
        headers.insert(header::VARY, "accept-language".parse().expect("vary"));
    }
    if conditional.is_some_and(|tag| tag.as_bytes() == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, body).into_response()
}

/// An edge in front of `origin` with its disk tier in `dir` (and a memory tier of
/// `memory_bytes`), taking purges signed by `key`. A directory still held by an edge
/// being dropped is waited for, as a restarted process would.
async fn edge_on(dir: &Path, origin: &str, memory_bytes: u64, key: &PurgeSigningKey) -> EdgeState {
    let settings = EdgeSettings {
        disk_dir: Some(dir.to_path_buf()),
        cache_bytes: memory_bytes,
        ..EdgeSettings::default()
    };
    let mut waited = Duration::ZERO;
    loop {
        match EdgeState::for_http_origin(
            "disk-test",
            origin,
            &settings,
            &OutboundSettings::default(),
            Some(key.public_key()),
        ) {
            Ok(state) => return state,
            Err(e) if e.to_string().contains("in use") && waited < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                waited += Duration::from_millis(20);
            }
            Err(e) => panic!("the edge cannot open its disk tier: {e}"),
        }
    }
}

/// [`edge_on`], served on a port of its own until the token is cancelled; its URL.
async fn serve_edge(
    dir: &Path,
    origin: &str,
    memory_bytes: u64,
    key: &PurgeSigningKey,
) -> (CancellationToken, String) {
    let stop = CancellationToken::new();
    let state = edge_on(dir, origin, memory_bytes, key).await;
    let edge = serve_edge_plain(state, &stop).await;
    (stop, edge)
}

/// `X-Cache` and body of a GET of `url`, on a connection of its own (so a stopped edge
/// keeps none open).
async fn get(url: &str) -> (String, String) {
    get_in(url, "en").await
}

/// As [`get`], asking for `language`.
async fn get_in(url: &str, language: &str) -> (String, String) {
    let response = reqwest::Client::new()
        .get(url)
        .header(header::ACCEPT_LANGUAGE, language)
        .send()
        .await
        .expect("edge answers");
    assert_eq!(response.status(), 200, "{url}");
    let cache = response.headers()["x-cache"]
        .to_str()
        .expect("x-cache")
        .to_string();
    (cache, response.text().await.expect("body"))
}

/// Waits until the edge at `edge` holds `entries` responses on disk: a copy is written
/// there once its body has passed to the client, so a client can be done first.
async fn until_on_disk(edge: &str, entries: f64) {
    let metrics = format!("{edge}{}", meridian_edge::METRICS_PATH);
    for _ in 0..250 {
        if scrape(&metrics).await[r#"meridian_edge_store_entries{tier="disk"}"#] == entries {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{edge} never held {entries} responses on disk");
}

/// The files of the disk tier in `dir`, each with its contents.
fn disk_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(dir.join("objects"))
        .expect("objects")
        .flatten()
    {
        for file in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            let contents = std::fs::read(file.path()).expect("file");
            files.push((file.path(), contents));
        }
    }
    files
}

/// A config pointing at `emulator`, with the invalidation topic made.
async fn pubsub_config(emulator: &PubSubEmulator) -> Config {
    let mut config = Config::default();
    config.pubsub.emulator_host = Some(emulator.host.clone());
    config.pubsub.project = Some(meridian_cli::emulators::PROJECT.to_string());
    config.invalidation.via = InvalidationTransport::Pubsub;
    let client = pubsub::connect(&config.pubsub).await.expect("pubsub");
    pubsub::ensure_topic(&client, &config.invalidation.topic)
        .await
        .expect("topic");
    config
}

/// Publishes a purge of `name` on the invalidation topic, as the replicator does.
async fn publish_purge(config: &Config, name: &str) {
    let client = pubsub::connect(&config.pubsub).await.expect("pubsub");
    let request = meridian_shared::api::PurgeRequest {
        name: name.to_string(),
        older_than: None,
    };
    let message = pubsub::PubsubMessage {
        data: serde_json::to_vec(&request).expect("json"),
        ..pubsub::PubsubMessage::default()
    };
    client
        .topic(&config.invalidation.topic)
        .new_publisher(None)
        .publish_immediately(vec![message], None)
        .await
        .expect("published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_serves_its_disk_without_the_origin_but_not_what_was_purged_meanwhile() {
    let emulator = PubSubEmulator::start()
        .await
        .unwrap_or_else(|e| panic!("the Pub/Sub emulator must run here: {e}"));
    let config = pubsub_config(&emulator).await;
    let origin_stop = CancellationToken::new();
    let (origin, origin_url) = Origin::start(&origin_stop).await;
    origin.set("/kept.txt", "kept across the restart");
    origin.set("/purged.txt", "old copy");
    let dir = tempfile::tempdir().expect("dir");
    let key = PurgeSigningKey::generate().expect("key");

    let first = edge_on(dir.path(), &origin_url, 1 << 20, &key).await;
    let listener = InvalidationListener::start(&config, "disk-edge", first.clone())
        .await
        .expect("subscribes");
    let stop = CancellationToken::new();
    let edge = serve_edge_plain(first, &stop).await;
    for path in ["/kept.txt", "/purged.txt"] {
        assert_eq!(get(&format!("{edge}{path}")).await.0, "MISS");
        assert_eq!(get(&format!("{edge}{path}")).await.0, "HIT");
    }
    until_on_disk(&edge, 2.0).await;
    // The edge goes down (keeping its subscription, as it does with a disk tier);
    // meanwhile the object changes and its purge is published.
    listener.abandon().await;
    stop.cancel();
    origin.set("/purged.txt", "new copy");
    publish_purge(&config, "purged.txt").await;

    let second = edge_on(dir.path(), &origin_url, 1 << 20, &key).await;
    let listener = InvalidationListener::start(&config, "disk-edge", second.clone())
        .await
        .expect("subscribes again");
    // What was published while it was down is applied first, as `meridian-edge` waits
    // for before it serves.
    listener.backlog_applied().await;
    let stop = CancellationToken::new();
    let edge = serve_edge_plain(second, &stop).await;
    assert_eq!(
        get(&format!("{edge}/kept.txt")).await,
        ("HIT".to_string(), "kept across the restart".to_string())
    );
    assert_eq!(
        origin.asked("/kept.txt"),
        [false],
        "served from disk without asking the origin"
    );
    assert_eq!(
        get(&format!("{edge}/purged.txt")).await,
        ("MISS".to_string(), "new copy".to_string()),
        "a purge published while the edge was down reaches its disk before it serves"
    );
    assert_eq!(origin.asked("/purged.txt"), [false, false]);
    // The recovered copy and the new one (written once its body has passed).
    until_on_disk(&edge, 2.0).await;
    listener.stop().await.expect("subscription deleted");
    stop.cancel();
    origin_stop.cancel();
}

#[tokio::test]
async fn without_a_purge_feed_to_vouch_for_them_copies_on_disk_are_revalidated_first() {
    let origin_stop = CancellationToken::new();
    let (origin, origin_url) = Origin::start(&origin_stop).await;
    origin.set("/same.txt", "unchanged");
    origin.set("/changed.txt", "before");
    let dir = tempfile::tempdir().expect("dir");
    let key = PurgeSigningKey::generate().expect("key");

    let (stop, edge) = serve_edge(dir.path(), &origin_url, 1 << 20, &key).await;
    get(&format!("{edge}/same.txt")).await;
    get(&format!("{edge}/changed.txt")).await;
    until_on_disk(&edge, 2.0).await;
    stop.cancel();
    // Changed while the edge was down, and its purge sent over HTTP went nowhere.
    origin.set("/changed.txt", "after");

    let (stop, edge) = serve_edge(dir.path(), &origin_url, 1 << 20, &key).await;
    assert_eq!(
        get(&format!("{edge}/same.txt")).await,
        ("REVALIDATED".to_string(), "unchanged".to_string())
    );
    assert_eq!(
        origin.asked("/same.txt"),
        [false, true],
        "a conditional request"
    );
    assert_eq!(
        get(&format!("{edge}/same.txt")).await.0,
        "HIT",
        "current again once revalidated"
    );
    assert_eq!(
        get(&format!("{edge}/changed.txt")).await,
        ("MISS".to_string(), "after".to_string())
    );
    until_on_disk(&edge, 2.0).await;
    stop.cancel();

    // Revalidated copies stay current in the next run, until it too finds a gap.
    let (stop, edge) = serve_edge(dir.path(), &origin_url, 1 << 20, &key).await;
    assert_eq!(get(&format!("{edge}/changed.txt")).await.0, "REVALIDATED");
    assert_eq!(origin.asked("/changed.txt"), [false, true, true]);
    stop.cancel();
    origin_stop.cancel();
}

#[tokio::test]
async fn variants_on_disk_are_found_again_after_a_restart() {
    let origin_stop = CancellationToken::new();
    let (origin, origin_url) = Origin::start(&origin_stop).await;
    origin.set("/vary/page", "page");
    let dir = tempfile::tempdir().expect("dir");
    let key = PurgeSigningKey::generate().expect("key");
    let url = |edge: &str| format!("{edge}/vary/page");

    let (stop, edge) = serve_edge(dir.path(), &origin_url, 1 << 20, &key).await;
    for language in ["en", "fr"] {
        assert_eq!(
            get_in(&url(&edge), language).await,
            ("MISS".to_string(), format!("page ({language})"))
        );
    }
    until_on_disk(&edge, 2.0).await;
    stop.cancel();

    let (stop, edge) = serve_edge(dir.path(), &origin_url, 1 << 20, &key).await;
    for language in ["en", "fr"] {
        assert_eq!(
            get_in(&url(&edge), language).await,
            ("REVALIDATED".to_string(), format!("page ({language})")),
            "each variant is found on disk (and checked, purges having gone by HTTP)"
        );
    }
    assert_eq!(origin.asked("/vary/page"), [false, false, true, true]);
    stop.cancel();
    origin_stop.cancel();
}

#[tokio::test]
async fn a_truncated_or_bit_flipped_disk_copy_is_dropped_and_fetched_again() {
    let origin_stop = CancellationToken::new();
    let (origin, origin_url) = Origin::start(&origin_stop).await;
    let flipped_body = "f".repeat(5000);
    let cut_body = "c".repeat(5000);
    origin.set("/flipped", &flipped_body);
    origin.set("/cut", &cut_body);
    let dir = tempfile::tempdir().expect("dir");
    let key = PurgeSigningKey::generate().expect("key");

    let (stop, edge) = serve_edge(dir.path(), &origin_url, 1 << 20, &key).await;
    get(&format!("{edge}/flipped")).await;
    get(&format!("{edge}/cut")).await;
    until_on_disk(&edge, 2.0).await;
    stop.cancel();
    // Damaged while the edge is down: one bit of one body, the end of the other file.
    for (path, mut contents) in disk_files(dir.path()) {
        if contents.starts_with(b"fff") {
            contents[2500] ^= 0x01;
            std::fs::write(&path, contents).expect("flipped");
        } else {
            std::fs::write(&path, &contents[..contents.len() - 10]).expect("cut");
        }
    }

    let (stop, edge) = serve_edge(dir.path(), &origin_url, 1 << 20, &key).await;
    assert_eq!(
        get(&format!("{edge}/flipped")).await,
        ("MISS".to_string(), flipped_body)
    );
    assert_eq!(
        get(&format!("{edge}/cut")).await,
        ("MISS".to_string(), cut_body)
    );
    assert_eq!(
        (origin.asked("/flipped"), origin.asked("/cut")),
        (vec![false, false], vec![false, false]),
        "fetched whole again: no damaged copy was there to revalidate"
    );
    assert_eq!(get(&format!("{edge}/flipped")).await.0, "HIT");
    let metrics = scrape(&format!("{edge}{}", meridian_edge::METRICS_PATH)).await;
    assert_eq!(
        metrics["meridian_edge_disk_damaged_total"], 2.0,
        "the cut file at start, the flipped one when read"
    );
    stop.cancel();
    origin_stop.cancel();
}

#[tokio::test]
async fn a_purge_by_prefix_empties_both_tiers_of_exactly_that_prefix() {
    let origin_stop = CancellationToken::new();
    let (origin, origin_url) = Origin::start(&origin_stop).await;
    let paths = ["/docs/a", "/docs/b/c", "/docsx"];
    for path in paths {
        origin.set(path, path);
    }
    let dir = tempfile::tempdir().expect("dir");
    let key = PurgeSigningKey::generate().expect("key");
    let (stop, edge) = serve_edge(dir.path(), &origin_url, 1 << 20, &key).await;
    for path in paths {
        get(&format!("{edge}{path}")).await;
    }
    until_on_disk(&edge, 3.0).await;
    let metrics = format!("{edge}{}", meridian_edge::METRICS_PATH);
    let before = scrape(&metrics).await;
    for tier in ["memory", "disk"] {
        assert_eq!(
            before[&format!("meridian_edge_store_entries{{tier=\"{tier}\"}}")],
            3.0
        );
    }
    let token = key
        .mint("replicate", meridian_shared::auth::unix_now())
        .expect("mint");
    let purged = reqwest::Client::new()
        .post(format!("{edge}{}", meridian_shared::api::PURGE_PATH))
        .bearer_auth(token)
        .json(&serde_json::json!({"prefix": "docs/"}))
        .send()
        .await
        .expect("edge answers");
    assert_eq!(purged.status(), 204);
    let after = scrape(&metrics).await;
    for tier in ["memory", "disk"] {
        assert_eq!(
            after[&format!("meridian_edge_store_entries{{tier=\"{tier}\"}}")],
            1.0
        );
    }
    let left: Vec<Vec<u8>> = disk_files(dir.path()).into_iter().map(|(_, c)| c).collect();
    assert_eq!(left.len(), 1);
    assert!(
        left[0].starts_with(b"/docsx"),
        "only /docsx is left on disk"
    );
    assert_eq!(get(&format!("{edge}/docsx")).await.0, "HIT");
    assert_eq!(get(&format!("{edge}/docs/a")).await.0, "MISS");
    stop.cancel();
    origin_stop.cancel();
}

/// A tiny memory tier leaves every hit to the disk, which hands out exactly what was
/// stored, headers included.
#[tokio::test]
async fn with_no_room_in_memory_hits_come_from_disk() {
    let origin_stop = CancellationToken::new();
    let (origin, origin_url) = Origin::start(&origin_stop).await;
    origin.set("/only-on-disk", "served from its file");
    let dir = tempfile::tempdir().expect("dir");
    let key = PurgeSigningKey::generate().expect("key");
    let (stop, edge) = serve_edge(dir.path(), &origin_url, 1, &key).await;
    let url = format!("{edge}/only-on-disk");
    assert_eq!(get(&url).await.0, "MISS");
    until_on_disk(&edge, 1.0).await;
    let response = reqwest::get(&url).await.expect("edge answers");
    let headers: HeaderMap = response.headers().clone();
    assert_eq!(headers["x-cache"], "HIT");
    let cache_status = headers["cache-status"].to_str().expect("cache-status");
    assert!(cache_status.ends_with("; detail=disk"), "{cache_status}");
    assert_eq!(headers["cache-control"], "max-age=3600");
    assert!(headers.contains_key("etag"));
    assert_eq!(response.text().await.expect("body"), "served from its file");
    let metrics = scrape(&format!("{edge}{}", meridian_edge::METRICS_PATH)).await;
    assert_eq!(
        metrics[r#"meridian_edge_store_entries{tier="memory"}"#],
        0.0
    );
    assert_eq!(metrics[r#"meridian_edge_store_entries{tier="disk"}"#], 1.0);
    assert_eq!(origin.asked("/only-on-disk"), [false]);
    stop.cancel();
    origin_stop.cancel();
}

/// Starts the `meridian-edge` binary in front of `origin` with its disk tier in `dir`,
/// and waits until it answers.
async fn edge_binary(origin: &str, dir: &Path, port: u16) -> tokio::process::Child {
    let edge = tokio::process::Command::new(binary("meridian-edge"))
        .args(["--origin", origin, "--addr", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .arg("--disk-dir")
        .arg(dir)
        .env_remove("MERIDIAN_CONFIG")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("edge starts");
    for _ in 0..200 {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok()
        {
            return edge;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the edge never listened");
}

#[tokio::test]
async fn the_edge_binary_killed_outright_comes_back_with_its_disk() {
    let origin_stop = CancellationToken::new();
    let (origin, origin_url) = Origin::start(&origin_stop).await;
    origin.set("/crash.txt", "still here after a crash");
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/crash.txt");

    let mut edge = edge_binary(&origin_url, dir.path(), port).await;
    assert_eq!(get(&url).await.0, "MISS");
    until_on_disk(&format!("http://127.0.0.1:{port}"), 1.0).await;
    // SIGKILL: no clean stop, nothing flushed.
    edge.kill().await.expect("killed");

    let mut edge = edge_binary(&origin_url, dir.path(), port).await;
    assert_eq!(
        get(&url).await,
        (
            "REVALIDATED".to_string(),
            "still here after a crash".to_string()
        ),
        "found on disk; with purges over HTTP, checked with the origin before serving"
    );
    assert_eq!(origin.asked("/crash.txt"), [false, true]);
    assert_eq!(get(&url).await.0, "HIT");
    edge.kill().await.expect("killed");
    origin_stop.cancel();
}
