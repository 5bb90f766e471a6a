//! Routing: boot answers only with live edges (it probes their `/healthz`), a region
//! whose edges are all down gives way to the next, and `GET /r/{object}` sends curl to
//! the object on the chosen edge.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use meridian_boot::BootState;
use meridian_shared::Config;
use tokio_util::sync::CancellationToken;

use crate::harness::serve_plain;
use crate::harness::stack::TestStack;

/// An edge stand-in on `addr` (port 0 for a new one): `/healthz` and nothing else.
/// Returns its address, to start it again on the same port.
async fn stand_in_edge(addr: SocketAddr, stop: &CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let bound = listener.local_addr().expect("addr");
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    tokio::spawn(meridian_shared::server::serve(
        listener,
        router,
        None,
        meridian_shared::server::ServeOptions::default(),
        stop.clone().cancelled_owned(),
    ));
    bound
}

/// The edge URLs boot answers with for a client at its default location (Madrid).
async fn answered(http: &reqwest::Client, boot: &str) -> Vec<String> {
    let answer: serde_json::Value = http
        .get(format!("{boot}/v1/edges"))
        .send()
        .await
        .expect("boot answers")
        .json()
        .await
        .expect("json");
    answer["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["url"].as_str().expect("url").to_string())
        .collect()
}

/// Until `check` holds for boot's answer; returns how long that took.
async fn until_answer(
    http: &reqwest::Client,
    boot: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let edges = answered(http, boot).await;
        if check(&edges) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; boot answers {edges:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three stand-in edges, two in Madrid and one in London (no other region has any),
/// and a boot over them probing with the default health settings (every 500 ms, out
/// after 2 failures).
struct Fleet {
    boot: String,
    m1: SocketAddr,
    m2: SocketAddr,
    l1: SocketAddr,
    madrid_1: CancellationToken,
    madrid_2: CancellationToken,
    london: CancellationToken,
    stop: CancellationToken,
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

impl Fleet {
    async fn start() -> Fleet {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (madrid_1, madrid_2, london) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let m1 = stand_in_edge(any, &madrid_1).await;
        let m2 = stand_in_edge(any, &madrid_2).await;
        let l1 = stand_in_edge(any, &london).await;
        let mut config = Config::default();
        for region in &mut config.regions {
            region.edges = match region.name.as_str() {
                "europe-southwest1" => vec![url(m1), url(m2)],
                "europe-west2" => vec![url(l1)],
                _ => Vec::new(),
            };
        }
        config.validate().expect("valid");
        let boot_state = BootState::from_config(&config, reqwest::Client::new())
            .await
            .expect("boot");
        let stop = CancellationToken::new();
        let boot = serve_plain(meridian_boot::router(boot_state), &stop).await;
        Fleet {
            boot,
            m1,
            m2,
            l1,
            madrid_1,
            madrid_2,
            london,
            stop,
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for token in [&self.madrid_1, &self.madrid_2, &self.london, &self.stop] {
            token.cancel();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_edge_leaves_answers_within_two_seconds_and_returns_when_it_recovers() {
    let mut fleet = Fleet::start().await;
    let (boot, m1, m2, l1) = (fleet.boot.clone(), fleet.m1, fleet.m2, fleet.l1);
    let http = reqwest::Client::new();
    assert_eq!(answered(&http, &boot).await.len(), 3, "all live at first");

    fleet.madrid_1.cancel();
    let gone = until_answer(&http, &boot, Duration::from_secs(2), "m1 gone", |edges| {
        !edges.contains(&url(m1))
    })
    .await;
    eprintln!("a stopped edge left boot's answers after {gone:?}");
    assert_eq!(answered(&http, &boot).await, [url(m2), url(l1)]);

    // The whole Madrid region down: its clients get London first.
    fleet.madrid_2.cancel();
    until_answer(
        &http,
        &boot,
        Duration::from_secs(2),
        "Madrid gone",
        |edges| edges == [url(l1)],
    )
    .await;

    // Back on the same port: in answers again after consecutive good probes.
    fleet.madrid_1 = CancellationToken::new();
    stand_in_edge(m1, &fleet.madrid_1).await;
    until_answer(&http, &boot, Duration::from_secs(3), "m1 back", |edges| {
        edges.first() == Some(&url(m1))
    })
    .await;
    let status: serde_json::Value = http
        .get(format!("{boot}/v1/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    let madrid = status["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .find(|r| r["name"] == "europe-southwest1")
        .expect("Madrid")
        .clone();
    let health: Vec<(String, bool)> = madrid["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e["url"].as_str().expect("url").to_string(),
                e["live"] == true,
            )
        })
        .collect();
    assert_eq!(health, [(url(m1), true), (url(m2), false)]);
    assert!(
        madrid["edges"][1]["last_error"].is_string(),
        "says why it is down"
    );
}

/// Runs Debian's headless chromium on `url` with `args`; its standard output.
fn chromium(args: &[&str], url: &str) -> String {
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium must be installed here (scripts/install-test-deps installs it)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The attribute `name` of the first element in `dom` that carries `marker`.
fn attribute_near(dom: &str, marker: &str, name: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let element_start = dom[..at].rfind('<')?;
    let element = &dom[element_start..at + dom[at..].find('>')?];
    let value_start = element.find(&format!("{name}=\""))? + name.len() + 2;
    let value_len = element[value_start..].find('"')?;
    Some(element[value_start..value_start + value_len].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_draws_every_region_and_edge_in_a_real_browser() {
    let fleet = Fleet::start().await;
    let http = reqwest::Client::new();
    fleet.madrid_1.cancel();
    fleet.madrid_2.cancel();
    until_answer(
        &http,
        &fleet.boot,
        Duration::from_secs(2),
        "Madrid down",
        |edges| edges == [url(fleet.l1)],
    )
    .await;
    let page = format!("{}/status", fleet.boot);
    let dom = tokio::task::spawn_blocking({
        let page = page.clone();
        move || chromium(&["--dump-dom"], &page)
    })
    .await
    .expect("chromium ran");
    assert_eq!(dom.matches("<circle").count(), 10, "one dot per region");
    let class_of =
        |region: &str| attribute_near(&dom, &format!("data-region=\"{region}\""), "class");
    assert_eq!(
        class_of("europe-southwest1").as_deref(),
        Some("region down")
    );
    assert_eq!(class_of("europe-west2").as_deref(), Some("region live"));
    assert_eq!(class_of("asia-northeast1").as_deref(), Some("region empty"));
    assert_eq!(
        dom.matches("<polygon").count(),
        7,
        "the continents are drawn"
    );
    for (edge, live) in [(fleet.m1, "false"), (fleet.m2, "false"), (fleet.l1, "true")] {
        let marker = format!("data-url=\"{}\"", url(edge));
        assert_eq!(
            attribute_near(&dom, &marker, "data-live").as_deref(),
            Some(live),
            "{marker}"
        );
    }
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let screenshot_arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || {
        chromium(&[&screenshot_arg, "--window-size=1280,900"], &page)
    })
    .await
    .expect("chromium ran");
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 10_000,
        "something was drawn ({} bytes)",
        png.len()
    );
    eprintln!("status page screenshot: {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_follows_boot_redirect_to_the_object_on_the_nearest_edge() {
    let stack = TestStack::start().await;
    let ticket = stack.ticket("docs/routed file.txt", "text/plain").await;
    let uploaded = stack
        .upload(&ticket, "text/plain", b"routed by boot".to_vec())
        .await;
    assert_eq!(uploaded.status(), 200);
    let info = stack.stack.info();
    // Tokyo, by coordinates: boot must send curl to the Tokyo edge.
    let url = format!(
        "{}/r/docs/routed%20file.txt?lat=35.68&lon=139.69",
        info.boot
    );
    let tokyo = &info
        .edges
        .iter()
        .find(|e| e.region == "asia-northeast1")
        .expect("Tokyo edge")
        .url;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--location", "--cacert"])
            .arg(&info.ca_cert)
            .args(["--write-out", "\n%{url_effective} %{http_code}", &url])
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let expected = format!("routed by boot\n{tokyo}/docs/routed%20file.txt 200");
        if text == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "curl -L got {text:?}, stderr {:?}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(&url)
        .send()
        .await
        .expect("boot answers");
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["cache-control"], "private");
    let refused = stack
        .http
        .get(format!("{}/r/..%2Fescape", info.boot))
        .send()
        .await
        .expect("boot answers");
    assert_eq!(
        refused.status(),
        400,
        "names are checked before redirecting"
    );
    stack.stack.stop().await;
}
