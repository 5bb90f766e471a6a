//! Which edges are alive. Every `interval_ms`, boot asks each known edge for
//! `/healthz` (all at once, each bounded by `timeout_ms`). A live edge that fails
//! `unhealthy_after` probes in a row leaves answers; a dead one that passes
//! `healthy_after` in a row comes back. Edges are taken to be live until probed, so a
//! boot that just started answers at once. Probes run in the background, never on a
//! request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use meridian_shared::config::HealthSettings;
use serde::Serialize;

use crate::EdgeDirectory;

/// What the probes know about one edge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeHealth {
    /// Whether it is in answers.
    pub live: bool,
    /// When it was last probed (Unix milliseconds); `None` before the first probe.
    pub last_probe_unix_ms: Option<u64>,
    /// How long the last probe took, when it succeeded.
    pub latency_ms: Option<f64>,
    /// Why the last probe failed, when it did.
    pub last_error: Option<String>,
    /// Probes in a row that went the same way as the last.
    pub streak: u32,
}

impl Default for EdgeHealth {
    fn default() -> Self {
        EdgeHealth {
            live: true,
            last_probe_unix_ms: None,
            latency_ms: None,
            last_error: None,
            streak: 0,
        }
    }
}

impl EdgeHealth {
    /// Takes one probe's outcome into account.
    fn record(&mut self, outcome: Result<Duration, String>, settings: &HealthSettings) {
        let passed = outcome.is_ok();
        let last_passed = self.last_error.is_none() && self.last_probe_unix_ms.is_some();
        self.streak = if self.last_probe_unix_ms.is_some() && passed == last_passed {
            self.streak.saturating_add(1)
        } else {
            1
        };
        self.last_probe_unix_ms = Some(unix_ms(SystemTime::now()));
        match outcome {
            Ok(latency) => {
                self.latency_ms = Some(latency.as_secs_f64() * 1e3);
                self.last_error = None;
                if !self.live && self.streak >= settings.healthy_after {
                    self.live = true;
                }
            }
            Err(why) => {
                self.latency_ms = None;
                self.last_error = Some(why);
                if self.live && self.streak >= settings.unhealthy_after {
                    self.live = false;
                }
            }
        }
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The probes' findings, by edge URL.
#[derive(Debug, Default)]
pub struct HealthBoard {
    edges: RwLock<BTreeMap<String, EdgeHealth>>,
}

impl HealthBoard {
    /// What is known of `edge`; live and unprobed when nothing is.
    pub fn of(&self, edge: &str) -> EdgeHealth {
        self.edges
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(edge)
            .cloned()
            .unwrap_or_default()
    }
}

/// Probes `directory`'s edges with `http` every `settings.interval_ms` until the task
/// is aborted, recording into `board` and taking dead edges out of `directory`.
pub fn spawn_probes(
    http: reqwest::Client,
    settings: HealthSettings,
    directory: Arc<EdgeDirectory>,
    board: Arc<HealthBoard>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(settings.interval_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            probe_round(&http, &settings, &directory, &board).await;
        }
    })
}

/// Probes every known edge once, then updates the board and the directory.
async fn probe_round(
    http: &reqwest::Client,
    settings: &HealthSettings,
    directory: &EdgeDirectory,
    board: &HealthBoard,
) {
    let edges = directory.known_edges();
    let timeout = Duration::from_millis(settings.timeout_ms);
    let outcomes = join_all(
        edges
            .iter()
            .map(|url| async move { (url, probe(http, url, timeout).await) }),
    )
    .await;
    let mut board_edges = board
        .edges
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Edges no longer known are forgotten.
    board_edges.retain(|url, _| edges.contains(url));
    for (url, outcome) in outcomes {
        let health = board_edges.entry(url.clone()).or_default();
        let was_live = health.live;
        health.record(outcome, settings);
        if was_live != health.live {
            match &health.last_error {
                Some(why) => tracing::warn!(edge = %url, cause = %why, "edge down: out of answers"),
                None => tracing::info!(edge = %url, "edge back: in answers again"),
            }
        }
    }
    let down: BTreeSet<String> = board_edges
        .iter()
        .filter(|(_, health)| !health.live)
        .map(|(url, _)| url.clone())
        .collect();
    drop(board_edges);
    directory.set_down(down);
}

/// One `GET {edge}/healthz`: its latency when it answered 2xx in time.
async fn probe(http: &reqwest::Client, edge: &str, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let url = format!("{}/healthz", edge.trim_end_matches('/'));
    match http.get(&url).timeout(timeout).send().await {
        Ok(response) if response.status().is_success() => Ok(started.elapsed()),
        Ok(response) => Err(format!("/healthz answered {}", response.status())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {} ms", timeout.as_millis())),
        Err(e) => Err(meridian_shared::error::Chain(&e).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_take_edges_out_and_bring_them_back() {
        let settings = HealthSettings {
            unhealthy_after: 2,
            healthy_after: 3,
            ..HealthSettings::default()
        };
        let mut edge = EdgeHealth::default();
        let ok = || Ok(Duration::from_millis(1));
        let fail = || Err("refused".to_string());
        edge.record(fail(), &settings);
        assert!(edge.live, "one failure is not enough");
        edge.record(ok(), &settings);
        edge.record(fail(), &settings);
        assert!(edge.live, "failures must be in a row");
        edge.record(fail(), &settings);
        assert!(!edge.live);
        edge.record(ok(), &settings);
        edge.record(ok(), &settings);
        assert!(!edge.live, "two successes of three");
        edge.record(ok(), &settings);
        assert!(edge.live);
        assert_eq!(edge.streak, 3);
    }
}
