//! Edge discovery from the Compute Engine API, against a stand-in the test runs (named
//! as such) that answers `instances.aggregatedList` with documents in the API's shape
//! (`tests/data/compute/`): RUNNING edges appear in boot's answers within a refresh,
//! stopping ones leave, and a failed refresh keeps the last good list. With group
//! health on, only instances their managed instance group finds HEALTHY are answered
//! (`listManagedInstances`, also in the API's shape).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use meridian_boot::BootState;
use meridian_shared::Config;
use meridian_shared::config::DiscoverySource;
use tokio_util::sync::CancellationToken;

use crate::harness::{boot_answer, edge_urls, serve_plain, testdata};

/// What the stand-in Compute API answers: the pages in order, or a failure.
#[derive(Clone, Default)]
struct StandIn {
    pages: Arc<Mutex<Vec<serde_json::Value>>>,
    failing: Arc<Mutex<bool>>,
    filters: Arc<Mutex<Vec<String>>>,
    /// `listManagedInstances` answers by group name.
    groups: Arc<Mutex<std::collections::BTreeMap<String, serde_json::Value>>>,
}

impl StandIn {
    fn router(&self) -> Router {
        let stand_in = self.clone();
        let groups = self.groups.clone();
        Router::new()
            .route(
                "/compute/v1/projects/meridian-test/aggregated/instances",
                get(move |Query(query): Query<Vec<(String, String)>>| {
                    let stand_in = stand_in.clone();
                    async move { stand_in.answer(&query) }
                }),
            )
            .route(
                "/compute/v1/projects/meridian-test/regions/{region}/instanceGroupManagers/{group}/listManagedInstances",
                axum::routing::post(
                    move |axum::extract::Path((_region, group)): axum::extract::Path<(String, String)>| {
                        let groups = groups.clone();
                        async move {
                            match groups.lock().expect("lock").get(&group) {
                                Some(answer) => axum::Json(answer.clone()).into_response(),
                                None => (StatusCode::NOT_FOUND, "no such group").into_response(),
                            }
                        }
                    },
                ),
            )
    }

    fn answer(&self, query: &[(String, String)]) -> Response {
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        self.filters.lock().expect("lock").extend(param("filter"));
        if *self.failing.lock().expect("lock") {
            return (StatusCode::SERVICE_UNAVAILABLE, "stand-in failure").into_response();
        }
        let pages = self.pages.lock().expect("lock");
        let index = match param("pageToken").as_deref() {
            None => 0,
            Some("page-2") => 1,
            Some(other) => panic!("unexpected page token {other}"),
        };
        axum::Json(pages[index].clone()).into_response()
    }

    fn set_pages(&self, pages: Vec<serde_json::Value>) {
        *self.pages.lock().expect("lock") = pages;
    }
}

fn fixture(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(testdata(&format!("compute/{name}"))).expect("fixture"))
        .expect("json")
}

/// Boot over discovery from `compute`, refreshing every 100 ms; returns its URL.
async fn boot_with_discovery(compute: &str, stop: &CancellationToken) -> String {
    boot_with(compute, false, stop).await
}

/// The same, with the groups' health taken into account when `group_health`.
async fn boot_with(compute: &str, group_health: bool, stop: &CancellationToken) -> String {
    let mut config = Config::default();
    config.boot.discovery.group_health = group_health;
    let discovery = &mut config.boot.discovery;
    discovery.source = DiscoverySource::Compute;
    discovery.project = Some("meridian-test".into());
    discovery.compute_endpoint = compute.to_string();
    discovery.refresh_interval_ms = 100;
    // The listed addresses are made up: this test is about discovery, not health.
    config.boot.health.probe = false;
    config.validate().expect("valid config");
    let state = BootState::from_config(&config, reqwest::Client::new())
        .await
        .expect("boot state");
    serve_plain(meridian_boot::router(state), stop).await
}

/// The edge URLs boot answers for a client at `lat`, `lon` (every region's, in order).
async fn edges_for(boot: &str, lat: f64, lon: f64) -> Vec<String> {
    edge_urls(&boot_answer(boot, &format!("?lat={lat}&lon={lon}"), &[]).await)
}

/// Polls until `check` holds for Tokyo's answer, for at most `within`.
async fn eventually(
    boot: &str,
    within: Duration,
    check: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let started = Instant::now();
    loop {
        let edges = edges_for(boot, 35.68, 139.69).await;
        if check(&edges) {
            return edges;
        }
        assert!(
            started.elapsed() < within,
            "never held; last answer {edges:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn running_edges_come_and_go_with_the_instance_list() {
    let stop = CancellationToken::new();
    let stand_in = StandIn::default();
    let page1 = fixture("aggregated-instances-page1.json");
    let page2 = fixture("aggregated-instances-page2.json");
    stand_in.set_pages(vec![page1.clone(), page2.clone()]);
    let compute = serve_plain(stand_in.router(), &stop).await;
    let boot = boot_with_discovery(&compute, &stop).await;
    // One refresh is 100 ms; allow for a loaded machine.
    let refresh = Duration::from_secs(2);

    // Both pages are read: Tokyo's RUNNING edge leads, the STOPPING one is absent, the
    // edge without an external IP is skipped, Madrid's edge is a fallback.
    let edges = eventually(&boot, refresh, |edges| !edges.is_empty()).await;
    assert_eq!(edges[0], "https://192.0.2.20");
    assert!(
        !edges.contains(&"https://192.0.2.21".to_string()),
        "{edges:?}"
    );
    let madrid = edges_for(&boot, 40.4, -3.7).await;
    assert_eq!(madrid[0], "https://192.0.2.10");
    assert!(
        stand_in
            .filters
            .lock()
            .expect("lock")
            .iter()
            .all(|f| f == "labels.meridian-role=edge"),
        "boot asks only for labelled edges"
    );

    // The autoscaler adds a Tokyo VM: it is in answers within a refresh.
    let mut grown = page1.clone();
    let tokyo = &mut grown["items"]["zones/asia-northeast1-b"]["instances"];
    let mut added = tokyo[0].clone();
    added["name"] = "edge-asia-northeast1-new".into();
    added["networkInterfaces"][0]["accessConfigs"][0]["natIP"] = "192.0.2.22".into();
    tokyo.as_array_mut().expect("instances").push(added);
    stand_in.set_pages(vec![grown.clone(), page2.clone()]);
    eventually(&boot, refresh, |edges| {
        edges.contains(&"https://192.0.2.22".to_string())
    })
    .await;

    // The first one is being stopped: it leaves within a refresh.
    let mut shrunk = grown.clone();
    shrunk["items"]["zones/asia-northeast1-b"]["instances"][0]["status"] = "STOPPING".into();
    stand_in.set_pages(vec![shrunk, page2]);
    let edges = eventually(&boot, refresh, |edges| {
        !edges.contains(&"https://192.0.2.20".to_string())
    })
    .await;
    assert_eq!(edges[0], "https://192.0.2.22");

    // The API fails: boot keeps answering with the last good list.
    *stand_in.failing.lock().expect("lock") = true;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edges = edges_for(&boot, 35.68, 139.69).await;
    assert_eq!(edges[0], "https://192.0.2.22", "{edges:?}");
    stop.cancel();
}

#[tokio::test]
async fn with_group_health_only_healthy_instances_are_answered() {
    let stop = CancellationToken::new();
    let stand_in = StandIn::default();
    stand_in.set_pages(vec![
        fixture("aggregated-instances-page1.json"),
        fixture("aggregated-instances-page2.json"),
    ]);
    let madrid = fixture("managed-instances-europe-southwest1.json");
    let mut tokyo = fixture("managed-instances-asia-northeast1.json");
    {
        let mut groups = stand_in.groups.lock().expect("lock");
        groups.insert("meridian-edge-europe-southwest1".into(), madrid);
        groups.insert("meridian-edge-asia-northeast1".into(), tokyo.clone());
    }
    let compute = serve_plain(stand_in.router(), &stop).await;
    let boot = boot_with(&compute, true, &stop).await;
    let refresh = Duration::from_secs(2);

    // Tokyo's RUNNING edge fails its group's health check: Tokyo's clients start with
    // the next region that has a healthy edge (Madrid's is HEALTHY).
    let edges = eventually(&boot, refresh, |edges| !edges.is_empty()).await;
    assert!(
        !edges.contains(&"https://192.0.2.20".to_string()),
        "{edges:?}"
    );
    assert!(
        edges.contains(&"https://192.0.2.10".to_string()),
        "{edges:?}"
    );

    // The health check passes again: it is back within a refresh.
    tokyo["managedInstances"][0]["instanceHealth"][0]["detailedHealthState"] = "HEALTHY".into();
    stand_in
        .groups
        .lock()
        .expect("lock")
        .insert("meridian-edge-asia-northeast1".into(), tokyo);
    let edges = eventually(&boot, refresh, |edges| {
        edges.first().map(String::as_str) == Some("https://192.0.2.20")
    })
    .await;
    assert!(
        !edges.contains(&"https://192.0.2.21".to_string()),
        "the STOPPING one stays out"
    );
    stop.cancel();
}
