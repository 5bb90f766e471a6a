//! Finding edges on Google Cloud: the RUNNING instances that carry the edge label,
//! from one Compute Engine `instances.aggregatedList` (every zone at once), refreshed
//! in the background every few seconds and never per request. A VM the autoscaler adds
//! is in answers after the next refresh; one being stopped leaves. A failed refresh
//! keeps the last good list, so an API hiccup never empties boot's answers.
//!
//! With `group_health`, each region's managed instance group is asked too
//! (`listManagedInstances`), and only instances its health check finds HEALTHY stay: on
//! Cloud Run, where boot instances come and go, the groups' own health checks stand in
//! for probing every edge from every boot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use meridian_shared::config::{DiscoverySettings, GOOGLE_COMPUTE_ENDPOINT};
use meridian_shared::regions::Region;
use meridian_shared::{Error, Result};
use serde::Deserialize;
use token_source::TokenSource;

use crate::EdgeDirectory;

/// Compute Engine's read-only scope.
const COMPUTE_SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/compute.readonly"];

/// Lists edge instances through the Compute Engine API.
pub struct ComputeDiscovery {
    http: reqwest::Client,
    list_url: String,
    /// `…/projects/{project}/regions/`, to which `{region}/instanceGroupManagers/…` is
    /// appended.
    regions_url: String,
    filter: String,
    settings: DiscoverySettings,
    tokens: Option<Arc<dyn TokenSource>>,
}

impl ComputeDiscovery {
    /// A client for `settings` (whose `project` the config validated), with calls
    /// bounded by `limits`.
    pub async fn new(
        settings: &DiscoverySettings,
        limits: &meridian_shared::config::OutboundSettings,
    ) -> Result<ComputeDiscovery> {
        let project = settings.project.clone().unwrap_or_default();
        let tokens = meridian_shared::gcp::credentials_for(
            settings.credentials,
            &settings.compute_endpoint,
            GOOGLE_COMPUTE_ENDPOINT,
            settings.credentials_file.as_deref(),
            &COMPUTE_SCOPES,
            "boot.discovery.credentials_file",
        )
        .await?;
        let (key, value) = settings.label.split_once('=').unwrap_or_default();
        Ok(ComputeDiscovery {
            http: meridian_shared::outbound::client_builder(limits)
                .timeout(limits.request_timeout())
                .build()
                .map_err(|e| Error::internal("building the Compute API client", e))?,
            list_url: format!(
                "{}/compute/v1/projects/{project}/aggregated/instances",
                settings.compute_endpoint.trim_end_matches('/')
            ),
            regions_url: format!(
                "{}/compute/v1/projects/{project}/regions/",
                settings.compute_endpoint.trim_end_matches('/')
            ),
            filter: format!("labels.{key}={value}"),
            settings: settings.clone(),
            tokens,
        })
    }

    /// Every RUNNING edge instance's URL in one of `regions`, by region, from one
    /// aggregated list (all its pages); with `group_health`, only those their group
    /// finds HEALTHY.
    pub async fn list(&self, regions: &[Region]) -> Result<BTreeMap<String, Vec<String>>> {
        let mut found = self.running().await?;
        found.retain(|region, _| {
            let known = regions.iter().any(|r| &r.name == region);
            if !known {
                tracing::debug!(%region, "edges found in a region the config does not know");
            }
            known
        });
        if self.settings.group_health {
            for (region, instances) in &mut found {
                let healthy = self.healthy_in_group(region).await?;
                instances.retain(|(name, _)| healthy.contains(name));
            }
        }
        Ok(found
            .into_iter()
            .map(|(region, instances)| {
                let mut urls: Vec<String> = instances.into_iter().map(|(_, url)| url).collect();
                urls.sort(); // a stable order, so round-robin does not jump on a refresh
                (region, urls)
            })
            .filter(|(_, urls)| !urls.is_empty())
            .collect())
    }

    /// The names of the instances `region`'s edge group finds HEALTHY, from all pages
    /// of its `listManagedInstances`.
    async fn healthy_in_group(&self, region: &str) -> Result<BTreeSet<String>> {
        let url = format!(
            "{}{region}/instanceGroupManagers/{}{region}/listManagedInstances",
            self.regions_url, self.settings.group_prefix
        );
        let mut healthy = BTreeSet::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut request = self.http.post(&url).header(http::header::CONTENT_LENGTH, 0);
            if let Some(token) = &page_token {
                request = request.query(&[("pageToken", token.as_str())]);
            }
            let page: ManagedInstances = meridian_shared::gcp::call_json(
                request,
                self.tokens.as_deref(),
                "listing an edge group's instance health",
            )
            .await?;
            for managed in page.managed_instances {
                let is_healthy = managed
                    .instance_health
                    .iter()
                    .any(|h| h.detailed_health_state == "HEALTHY");
                if is_healthy && let Some(name) = managed.instance.rsplit('/').next() {
                    healthy.insert(name.to_string());
                }
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => return Ok(healthy),
            }
        }
    }

    /// Every RUNNING edge instance with an address, as `(name, url)` by region.
    async fn running(&self) -> Result<BTreeMap<String, Vec<(String, String)>>> {
        let mut edges: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut request = self.http.get(&self.list_url).query(&[
                ("filter", self.filter.as_str()),
                ("returnPartialSuccess", "true"),
            ]);
            if let Some(token) = &page_token {
                request = request.query(&[("pageToken", token.as_str())]);
            }
            let page: AggregatedList = meridian_shared::gcp::call_json(
                request,
                self.tokens.as_deref(),
                "listing edge instances",
            )
            .await?;
            for instance in page.items.into_values().flat_map(|scope| scope.instances) {
                if let Some((region, url)) = self.edge_of(&instance) {
                    edges
                        .entry(region)
                        .or_default()
                        .push((instance.name.clone(), url));
                }
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => break,
            }
        }
        Ok(edges)
    }

    /// The region and URL of a RUNNING instance with an address, else `None`.
    fn edge_of(&self, instance: &Instance) -> Option<(String, String)> {
        if instance.status != "RUNNING" {
            return None;
        }
        let zone = instance.zone.rsplit('/').next()?;
        let region = zone.rsplit_once('-')?.0.to_string();
        let interface = instance.network_interfaces.first()?;
        let ip = if self.settings.use_internal_ip {
            interface.network_ip.clone()
        } else {
            interface
                .access_configs
                .iter()
                .find_map(|config| config.nat_ip.clone())
        }?;
        let default_port = match self.settings.edge_scheme.as_str() {
            "https" => 443,
            _ => 80,
        };
        let url = if self.settings.edge_port == default_port {
            format!("{}://{ip}", self.settings.edge_scheme)
        } else {
            format!(
                "{}://{ip}:{}",
                self.settings.edge_scheme, self.settings.edge_port
            )
        };
        Some((region, url))
    }

    /// Refreshes `directory` every `refresh_interval_ms` until the task is dropped:
    /// the configured regions, each with the edges the last good list found in it.
    pub fn spawn_refresh(
        self,
        regions: Vec<Region>,
        directory: Arc<EdgeDirectory>,
    ) -> tokio::task::JoinHandle<()> {
        let interval = Duration::from_millis(self.settings.refresh_interval_ms);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match self.list(&regions).await {
                    Ok(found) => {
                        directory.set_known(with_edges(&regions, &found));
                    }
                    Err(e) => tracing::warn!(
                        cause = %meridian_shared::error::Chain(&e),
                        "edge discovery failed; keeping the last list"
                    ),
                }
            }
        })
    }
}

/// `regions`, each with exactly the edges `found` lists for it.
fn with_edges(regions: &[Region], found: &BTreeMap<String, Vec<String>>) -> Vec<Region> {
    regions
        .iter()
        .map(|region| Region {
            edges: found.get(&region.name).cloned().unwrap_or_default(),
            ..region.clone()
        })
        .collect()
}

/// The parts of `listManagedInstances` that matter here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedInstances {
    #[serde(default)]
    managed_instances: Vec<ManagedInstance>,
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedInstance {
    /// The instance's URL, ending in its name.
    instance: String,
    /// One entry per health check; none before the first check.
    #[serde(default)]
    instance_health: Vec<InstanceHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceHealth {
    #[serde(default)]
    detailed_health_state: String,
}

/// The parts of `instances.aggregatedList` that matter here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregatedList {
    /// Per zone (`zones/us-central1-a`): its instances, or a warning when none.
    #[serde(default)]
    items: BTreeMap<String, ScopedList>,
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ScopedList {
    #[serde(default)]
    instances: Vec<Instance>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Instance {
    #[serde(default)]
    name: String,
    status: String,
    zone: String,
    #[serde(default)]
    network_interfaces: Vec<NetworkInterface>,
}

#[derive(Debug, Deserialize)]
struct NetworkInterface {
    #[serde(rename = "networkIP")]
    network_ip: Option<String>,
    #[serde(rename = "accessConfigs", default)]
    access_configs: Vec<AccessConfig>,
}

#[derive(Debug, Deserialize)]
struct AccessConfig {
    #[serde(rename = "natIP")]
    nat_ip: Option<String>,
}
