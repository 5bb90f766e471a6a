//! The deployment description: one TOML file (every field has a default, so an empty
//! file is the embedded default), then environment overrides, then validation.
//!
//! ```toml
//! main_region = "europe-southwest1"
//! [storage]
//! backend = "local"          # local | memory | gcs
//! root = ".meridian/buckets"
//! [[regions]]
//! name = "europe-west2"
//! lat = 51.5085
//! lon = -0.1257
//! bucket = "meridian-europe-west2"
//! edges = ["https://127.0.0.1:7081"]
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::regions::{self, Location, Region};

/// A whole Meridian deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Region that holds the main bucket. Default: `europe-southwest1`.
    pub main_region: String,
    /// The regions. Default: the ten regions of DESIGN.md, without edges.
    pub regions: Vec<Region>,
    /// Where buckets live.
    pub storage: StorageConfig,
    /// Bearer-token settings for publishers and purges.
    pub auth: AuthConfig,
    /// Signed-URL settings.
    pub signing: SigningConfig,
    /// Edge cache settings.
    pub edge: EdgeSettings,
    /// Boot (edge discovery) settings.
    pub boot: BootSettings,
    /// Timeouts for calls to other services.
    pub outbound: OutboundSettings,
    /// Replicator settings.
    pub replicate: ReplicateSettings,
    /// How edges learn that an object changed.
    pub invalidation: InvalidationSettings,
    /// Where Pub/Sub is (invalidations on Google Cloud, storage notifications).
    pub pubsub: PubSubSettings,
}

/// Replicator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicateSettings {
    /// Also reconcile every regional bucket with the main bucket this often, in seconds,
    /// repairing what lost events left behind. Default: none (`meridian up` reconciles
    /// at every start). Env: `MERIDIAN_RECONCILE_EVERY_SECONDS`.
    pub reconcile_every_seconds: Option<u64>,
    /// Also pull storage notifications (Cloud Storage → Pub/Sub, `JSON_API_V1`) from
    /// this Pub/Sub subscription and apply them, as a worker. Default: none (changes
    /// arrive over HTTP only). Env: `MERIDIAN_REPLICATE_SUBSCRIPTION`.
    pub pull_subscription: Option<String>,
    /// A pulled notification not acknowledged within this long (a replicator that
    /// died while applying it) is delivered again, in seconds: 10 to 600, as Pub/Sub
    /// allows. Default: 60.
    pub pull_ack_deadline_seconds: u64,
}

impl Default for ReplicateSettings {
    fn default() -> Self {
        ReplicateSettings {
            reconcile_every_seconds: None,
            pull_subscription: None,
            pull_ack_deadline_seconds: 60,
        }
    }
}

/// How the replicator tells edges that an object changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvalidationTransport {
    /// A signed `POST /_meridian/purge` to every edge in `regions[].edges`, retried
    /// until taken (the local stack, any fixed fleet).
    #[default]
    Http,
    /// One message per change on `invalidation.topic`; every edge reads it from a
    /// subscription of its own (Google Cloud, where edges come and go).
    Pubsub,
}

/// Invalidation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InvalidationSettings {
    /// `http` or `pubsub`. Default: `http`. Env: `MERIDIAN_INVALIDATION`.
    pub via: InvalidationTransport,
    /// Pub/Sub: the topic invalidations are published on. Default:
    /// `meridian-invalidations`. Env: `MERIDIAN_INVALIDATION_TOPIC`.
    pub topic: String,
    /// Pub/Sub: an edge's subscription is deleted by Pub/Sub after this long without
    /// the edge reading it (an edge that vanished without a clean stop), in seconds.
    /// At least one day, Pub/Sub's minimum. Default: 86400.
    pub subscription_ttl_seconds: u64,
}

impl Default for InvalidationSettings {
    fn default() -> Self {
        InvalidationSettings {
            via: InvalidationTransport::Http,
            topic: "meridian-invalidations".to_string(),
            subscription_ttl_seconds: 86_400,
        }
    }
}

/// Where the Pub/Sub API is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubSubSettings {
    /// The project holding the topics and subscriptions. Default: none, which means
    /// the project of the Application Default Credentials. Env:
    /// `MERIDIAN_PUBSUB_PROJECT`.
    pub project: Option<String>,
    /// `host:port` of a Pub/Sub emulator (no credentials). Default: none (Google).
    /// Env: `PUBSUB_EMULATOR_HOST`, the variable Google's client libraries read.
    pub emulator_host: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            main_region: "europe-southwest1".to_string(),
            regions: regions::default_catalog(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            signing: SigningConfig::default(),
            edge: EdgeSettings::default(),
            boot: BootSettings::default(),
            outbound: OutboundSettings::default(),
            replicate: ReplicateSettings::default(),
            invalidation: InvalidationSettings::default(),
            pubsub: PubSubSettings::default(),
        }
    }
}

/// Which storage backend holds the buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Local filesystem under `storage.root` (the embedded default).
    Local,
    /// In-process memory; contents vanish on exit (tests).
    Memory,
    /// Google Cloud Storage's JSON API at `storage.gcs_endpoint`.
    Gcs,
}

/// Storage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Backend. Default: `local`. Env: `MERIDIAN_STORAGE_BACKEND`.
    pub backend: Backend,
    /// Folder holding one sub-folder per bucket (local backend). Default:
    /// `.meridian/buckets`. Env: `MERIDIAN_STORAGE_ROOT`.
    pub root: PathBuf,
    /// Cloud Storage JSON API endpoint. Default: `https://storage.googleapis.com`.
    /// Env: `MERIDIAN_GCS_ENDPOINT`, or `STORAGE_EMULATOR_HOST` (which also makes
    /// credentials anonymous).
    pub gcs_endpoint: String,
    /// How the GCS backend authenticates. Default: `auto`. Env:
    /// `MERIDIAN_GCS_CREDENTIALS`.
    pub gcs_credentials: GoogleCredentials,
    /// A service-account key file for the GCS backend. Default: none, which means
    /// `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server. Env:
    /// `MERIDIAN_GCS_CREDENTIALS_FILE`.
    pub gcs_credentials_file: Option<PathBuf>,
}

/// The endpoint Google serves Cloud Storage's JSON API on.
pub const GOOGLE_STORAGE_ENDPOINT: &str = "https://storage.googleapis.com";

/// How a client of a Google API (Cloud Storage, Compute Engine) authenticates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GoogleCredentials {
    /// Application Default Credentials against Google's endpoint; anonymous against
    /// any other (an emulator).
    #[default]
    Auto,
    /// Application Default Credentials, whatever the endpoint.
    ApplicationDefault,
    /// No credentials (emulators only).
    Anonymous,
}

impl GoogleCredentials {
    /// What these credentials mean for a client of `endpoint`, whose Google address is
    /// `google_endpoint`: `auto` is anonymous for any other (an emulator or stand-in).
    pub fn for_endpoint(self, endpoint: &str, google_endpoint: &str) -> GoogleCredentials {
        match self {
            GoogleCredentials::Auto if endpoint.trim_end_matches('/') == google_endpoint => {
                GoogleCredentials::ApplicationDefault
            }
            GoogleCredentials::Auto => GoogleCredentials::Anonymous,
            explicit => explicit,
        }
    }
}

impl StorageConfig {
    /// The credentials `auto` stands for with this endpoint.
    pub fn effective_gcs_credentials(&self) -> GoogleCredentials {
        self.gcs_credentials
            .for_endpoint(&self.gcs_endpoint, GOOGLE_STORAGE_ENDPOINT)
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Local,
            root: PathBuf::from(".meridian/buckets"),
            gcs_endpoint: GOOGLE_STORAGE_ENDPOINT.to_string(),
            gcs_credentials: GoogleCredentials::Auto,
            gcs_credentials_file: None,
        }
    }
}

/// Bearer-token settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret for publisher tokens (sign, delete). Default: none. Env:
    /// `MERIDIAN_JWT_SECRET`.
    pub jwt_secret: Option<String>,
    /// File holding the secret instead. Default: none. Env: `MERIDIAN_JWT_SECRET_FILE`.
    pub jwt_secret_file: Option<PathBuf>,
    /// The replicator's purge-signing key: an Ed25519 PKCS#8 document, base64. Only
    /// the replicator needs it. Default: none. Env: `MERIDIAN_PURGE_PRIVATE_KEY`.
    pub purge_private_key: Option<String>,
    /// File holding it instead. Default: none. Env: `MERIDIAN_PURGE_PRIVATE_KEY_FILE`.
    pub purge_private_key_file: Option<PathBuf>,
    /// The key edges check purges with: the signing key's public half, 32 bytes
    /// base64. Default: derived from the private key when that is set. Env:
    /// `MERIDIAN_PURGE_PUBLIC_KEY`.
    pub purge_public_key: Option<String>,
    /// File holding it instead. Default: none. Env: `MERIDIAN_PURGE_PUBLIC_KEY_FILE`.
    pub purge_public_key_file: Option<PathBuf>,
}

impl AuthConfig {
    /// The secret, from the file when one is named. Errors name the missing field.
    pub fn secret(&self) -> Result<Vec<u8>> {
        secret_from("auth.jwt_secret", &self.jwt_secret, &self.jwt_secret_file)
    }

    /// The purge-signing key (the replicator's).
    pub fn purge_signing_key(&self) -> Result<crate::auth::PurgeSigningKey> {
        let text = secret_from(
            "auth.purge_private_key",
            &self.purge_private_key,
            &self.purge_private_key_file,
        )?;
        crate::auth::PurgeSigningKey::from_base64(&String::from_utf8_lossy(&text))
    }

    /// The key edges verify purges with: the configured public key, else the public
    /// half of the configured private key.
    pub fn purge_public_key(&self) -> Result<crate::auth::PurgePublicKey> {
        if self.purge_public_key.is_none() && self.purge_public_key_file.is_none() {
            if self.purge_private_key.is_some() || self.purge_private_key_file.is_some() {
                return Ok(self.purge_signing_key()?.public_key().clone());
            }
            return Err(Error::Config(
                "auth.purge_public_key: not set (set it, auth.purge_public_key_file, or the private key)".into(),
            ));
        }
        let text = secret_from(
            "auth.purge_public_key",
            &self.purge_public_key,
            &self.purge_public_key_file,
        )?;
        crate::auth::PurgePublicKey::from_base64(&String::from_utf8_lossy(&text))
    }
}

/// Signed-URL settings. Exactly one way of signing is used: an HMAC key when
/// `hmac_access_id` is set, else the service-account key file, else IAM signBlob as
/// `iam_service_account` (on Cloud Run, which has no key file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// Base URL signed URLs point at. Default: `https://storage.googleapis.com`.
    /// Env: `MERIDIAN_SIGNING_ENDPOINT`.
    pub endpoint: String,
    /// Lifetime of an upload URL in seconds. Default: 60.
    pub ttl_seconds: u64,
    /// HMAC access id (`GOOG4-HMAC-SHA256`). Default: none. Env: `MERIDIAN_HMAC_ACCESS_ID`.
    pub hmac_access_id: Option<String>,
    /// HMAC secret. Default: none. Env: `MERIDIAN_HMAC_SECRET`.
    pub hmac_secret: Option<String>,
    /// File holding the HMAC secret instead. Default: none. Env: `MERIDIAN_HMAC_SECRET_FILE`.
    pub hmac_secret_file: Option<PathBuf>,
    /// Service-account JSON key (`GOOG4-RSA-SHA256`). Default: none. Env:
    /// `MERIDIAN_SERVICE_ACCOUNT_FILE`.
    pub service_account_file: Option<PathBuf>,
    /// Sign through the IAM Credentials API as this service account (its e-mail),
    /// which needs `iam.serviceAccountTokenCreator` on itself. Default: none. Env:
    /// `MERIDIAN_SIGNING_SERVICE_ACCOUNT`.
    pub iam_service_account: Option<String>,
    /// IAM Credentials API endpoint. Default: `https://iamcredentials.googleapis.com`.
    pub iam_endpoint: String,
    /// How calls to it authenticate. Default: `auto`.
    pub iam_credentials: GoogleCredentials,
    /// A service-account key file for those calls. Default: none, which means
    /// `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server.
    pub iam_credentials_file: Option<PathBuf>,
}

/// The IAM Credentials API endpoint.
pub const GOOGLE_IAM_CREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            endpoint: "https://storage.googleapis.com".to_string(),
            ttl_seconds: 60,
            hmac_access_id: None,
            hmac_secret: None,
            hmac_secret_file: None,
            service_account_file: None,
            iam_service_account: None,
            iam_endpoint: GOOGLE_IAM_CREDENTIALS_ENDPOINT.to_string(),
            iam_credentials: GoogleCredentials::Auto,
            iam_credentials_file: None,
        }
    }
}

impl SigningConfig {
    /// The HMAC secret, from the file when one is named.
    pub fn hmac_secret(&self) -> Result<Vec<u8>> {
        secret_from(
            "signing.hmac_secret",
            &self.hmac_secret,
            &self.hmac_secret_file,
        )
    }
}

/// Edge cache settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    /// Memory budget of the object cache in bytes. Default: 256 MiB.
    pub cache_bytes: u64,
    /// Freshness when an object's Cache-Control says nothing. Default: 3600 s.
    pub default_max_age_seconds: u64,
    /// Objects larger than this are streamed from the bucket and never cached whole.
    /// Default: 8 MiB.
    pub stream_threshold_bytes: u64,
    /// A stale copy may be served while one background fetch refreshes it, for this
    /// long past its freshness, unless its Cache-Control says
    /// `stale-while-revalidate=N` itself. Default: 0 (off).
    pub stale_while_revalidate_seconds: u64,
    /// A stale copy may be served when the origin fails (5xx, timeout), for this long
    /// past its freshness, unless its Cache-Control says `stale-if-error=N` itself.
    /// Default: 0 (off).
    pub stale_if_error_seconds: u64,
    /// An HTTP origin (`http://host:port`, optionally with a path prefix): the edge
    /// becomes a reverse proxy cache in front of it, forwarding every method and path,
    /// instead of serving its region's bucket. Its responses are stored only as their
    /// headers allow (no default lifetime). Default: none (the bucket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Heuristic freshness for an HTTP origin's responses that state no lifetime: this
    /// percentage of the time since their `Last-Modified` (RFC 9111 §4.2.2; 10 is
    /// usual), at most 100. Default: 0 (off: such responses are stored only to be
    /// revalidated on every use, when they have a validator).
    pub origin_heuristic_percent: u32,
    /// A directory for the disk tier: stored responses are also written there and
    /// survive a restart. Default: none (memory only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_dir: Option<std::path::PathBuf>,
    /// Byte budget of the disk tier (bodies plus metadata). Default: 10 GiB.
    pub disk_bytes: u64,
    /// Client connections served at once; more wait in the accept queue. Each open
    /// connection costs about 30 KiB (plain HTTP) to 45 KiB (TLS): size this with the
    /// memory tier to the machine. Default: 4096.
    pub max_connections: usize,
    /// Connections one client address may hold at once. Default: 1024.
    pub max_connections_per_address: usize,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        EdgeSettings {
            cache_bytes: 256 * 1024 * 1024,
            default_max_age_seconds: 3600,
            stream_threshold_bytes: 8 * 1024 * 1024,
            stale_while_revalidate_seconds: 0,
            stale_if_error_seconds: 0,
            origin: None,
            origin_heuristic_percent: 0,
            disk_dir: None,
            disk_bytes: 10 * 1024 * 1024 * 1024,
            max_connections: 4096,
            max_connections_per_address: 1024,
        }
    }
}

/// Boot settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootSettings {
    /// Location assumed for clients that give none. Default: Madrid (40.4165, -3.7026).
    pub default_location: Location,
    /// How many next-nearest regions contribute a fallback edge. Default: 2.
    pub fallback_regions: usize,
    /// How long clients may keep an answer, in seconds. Default: 60.
    pub ttl_seconds: u64,
    /// Where boot learns which edges exist. Default: the regions' `edges`.
    pub discovery: DiscoverySettings,
    /// How boot learns where a client is.
    pub location: LocationSettings,
    /// How boot learns which edges are alive.
    pub health: HealthSettings,
}

/// Where boot takes a client to be, in this order: a header set by a trusted load
/// balancer, a GeoIP lookup of the client's address, explicit `lat`/`lon`, the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocationSettings {
    /// A request header carrying `lat,long`, set by a load balancer in front of boot
    /// (Google's external Application Load Balancer: a custom request header with
    /// `{client_city_lat_long}`). Read only from `trusted_proxies`. Default: none.
    pub header: Option<String>,
    /// Networks (CIDR, IPv4 or IPv6) of the proxies in front of boot. Their header is
    /// believed, and `X-Forwarded-For` is read back through them to the first address
    /// that is not one of theirs. Default: none (the peer is the client).
    pub trusted_proxies: Vec<String>,
    /// GeoIP city databases (MMDB), searched in order (DB-IP's come as one IPv4 and
    /// one IPv6 file; `scripts/fetch-geoip` fetches them). Default: none. Env:
    /// `MERIDIAN_GEOIP_DATABASES` (paths separated by `:`).
    pub geoip_databases: Vec<PathBuf>,
}

/// Edge health probing: boot asks every known edge for `/healthz` and answers only
/// with live ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// Probe edges at all. Default: true. Env: `MERIDIAN_HEALTH_PROBES`.
    pub probe: bool,
    /// Time between probe rounds, in milliseconds. Default: 500.
    pub interval_ms: u64,
    /// Time one probe may take, in milliseconds. Default: 500.
    pub timeout_ms: u64,
    /// Consecutive failed probes that take a live edge out of answers. Default: 2.
    pub unhealthy_after: u32,
    /// Consecutive good probes that bring a dead edge back. Default: 2.
    pub healthy_after: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            probe: true,
            interval_ms: 500,
            timeout_ms: 500,
            unhealthy_after: 2,
            healthy_after: 2,
        }
    }
}

/// Where boot learns which edges exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoverySource {
    /// The regions' `edges` in this config (the local stack, any fixed fleet).
    #[default]
    Config,
    /// The RUNNING instances of the edge instance groups, from the Compute Engine API.
    Compute,
}

/// The Compute Engine API endpoint.
pub const GOOGLE_COMPUTE_ENDPOINT: &str = "https://compute.googleapis.com";

/// Edge discovery settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoverySettings {
    /// `config` or `compute`. Default: `config`. Env: `MERIDIAN_DISCOVERY`.
    pub source: DiscoverySource,
    /// Compute: the project whose instances to list. Default: none. Env:
    /// `MERIDIAN_DISCOVERY_PROJECT`.
    pub project: Option<String>,
    /// Compute: the label (`key=value`) edge instances carry. Default:
    /// `meridian-role=edge`.
    pub label: String,
    /// Compute: how often to list instances, in milliseconds (one aggregated list per
    /// refresh, never one per request). Default: 5000.
    pub refresh_interval_ms: u64,
    /// Compute: reach edges on their internal IP instead of their external one.
    /// Default: false.
    pub use_internal_ip: bool,
    /// Compute: keep only instances their managed instance group's health check finds
    /// HEALTHY (`listManagedInstances` per region), so boots on Cloud Run need not
    /// probe. Default: false.
    pub group_health: bool,
    /// Compute: the edge instance groups' names, this plus the region (as infra/
    /// names them). Default: `meridian-edge-`.
    pub group_prefix: String,
    /// Compute: scheme of the edge URLs built from IPs. Default: `https`.
    pub edge_scheme: String,
    /// Compute: port of the edge URLs built from IPs. Default: 443.
    pub edge_port: u16,
    /// Compute Engine API endpoint. Default: `https://compute.googleapis.com`.
    pub compute_endpoint: String,
    /// How discovery authenticates. Default: `auto`.
    pub credentials: GoogleCredentials,
    /// A service-account key file for discovery. Default: none, which means
    /// `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server.
    pub credentials_file: Option<PathBuf>,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        DiscoverySettings {
            source: DiscoverySource::Config,
            project: None,
            label: "meridian-role=edge".to_string(),
            refresh_interval_ms: 5_000,
            use_internal_ip: false,
            group_health: false,
            group_prefix: "meridian-edge-".to_string(),
            edge_scheme: "https".to_string(),
            edge_port: 443,
            compute_endpoint: GOOGLE_COMPUTE_ENDPOINT.to_string(),
            credentials: GoogleCredentials::Auto,
            credentials_file: None,
        }
    }
}

impl Default for BootSettings {
    fn default() -> Self {
        BootSettings {
            default_location: Location {
                lat: 40.4165,
                lon: -3.7026,
            },
            fallback_regions: 2,
            ttl_seconds: 60,
            discovery: DiscoverySettings::default(),
            location: LocationSettings::default(),
            health: HealthSettings::default(),
        }
    }
}

/// Timeouts for every call Meridian makes to another service: Cloud Storage, edges
/// (purges), the replicator (storage events). A call that runs out of time fails with
/// a timeout (504 to whoever is waiting on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// Time to open a connection, in milliseconds. Default: 5000.
    pub connect_timeout_ms: u64,
    /// Time to wait for an answer, and for each next chunk of a body in either
    /// direction, in milliseconds. A transfer that keeps moving is never cut, however
    /// large. Default: 30000.
    pub request_timeout_ms: u64,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        OutboundSettings {
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
        }
    }
}

impl OutboundSettings {
    /// The connect timeout.
    pub fn connect_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.connect_timeout_ms)
    }

    /// The request (silence) timeout.
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.request_timeout_ms)
    }
}

impl Config {
    /// Parses a TOML document, fills defaults and validates it (no environment).
    pub fn from_toml_str(text: &str) -> Result<Config> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| Error::Config(e.message().to_string()))?;
        config.fill_defaults();
        config.validate()?;
        Ok(config)
    }

    /// Loads `path` (or the embedded default when `None`), applies `MERIDIAN_*`
    /// environment overrides and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("cannot read config file {}: {e}", path.display()))
                })?;
                toml::from_str(&text)
                    .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))?
            }
            None => Config::default(),
        };
        config.apply_env(|key| std::env::var(key).ok())?;
        config.fill_defaults();
        config.validate()?;
        Ok(config)
    }

    /// Applies the documented `MERIDIAN_*` overrides, reading variables through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = var("MERIDIAN_STORAGE_BACKEND") {
            self.storage.backend = env_choice("MERIDIAN_STORAGE_BACKEND", &v)?;
        }
        if let Some(v) = var("MERIDIAN_STORAGE_ROOT") {
            self.storage.root = PathBuf::from(v);
        }
        if let Some(v) = var("STORAGE_EMULATOR_HOST") {
            // The variable Google's client libraries read: an emulator, no credentials.
            self.storage.gcs_endpoint = if v.contains("://") {
                v
            } else {
                format!("http://{v}")
            };
            self.storage.gcs_credentials = GoogleCredentials::Anonymous;
        }
        if let Some(v) = var("MERIDIAN_GCS_ENDPOINT") {
            self.storage.gcs_endpoint = v;
        }
        if let Some(v) = var("MERIDIAN_GCS_CREDENTIALS") {
            self.storage.gcs_credentials = env_choice("MERIDIAN_GCS_CREDENTIALS", &v)?;
        }
        if let Some(v) = var("MERIDIAN_GCS_CREDENTIALS_FILE") {
            self.storage.gcs_credentials_file = Some(PathBuf::from(v));
        }
        if let Some(v) = var("MERIDIAN_JWT_SECRET") {
            self.auth.jwt_secret = Some(v);
        }
        if let Some(v) = var("MERIDIAN_JWT_SECRET_FILE") {
            self.auth.jwt_secret_file = Some(PathBuf::from(v));
        }
        if let Some(v) = var("MERIDIAN_PURGE_PRIVATE_KEY") {
            self.auth.purge_private_key = Some(v);
        }
        if let Some(v) = var("MERIDIAN_PURGE_PRIVATE_KEY_FILE") {
            self.auth.purge_private_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = var("MERIDIAN_PURGE_PUBLIC_KEY") {
            self.auth.purge_public_key = Some(v);
        }
        if let Some(v) = var("MERIDIAN_PURGE_PUBLIC_KEY_FILE") {
            self.auth.purge_public_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = var("MERIDIAN_DISCOVERY") {
            self.boot.discovery.source = env_choice("MERIDIAN_DISCOVERY", &v)?;
        }
        if let Some(v) = var("MERIDIAN_DISCOVERY_PROJECT") {
            self.boot.discovery.project = Some(v);
        }
        if let Some(v) = var("MERIDIAN_GEOIP_DATABASES") {
            self.boot.location.geoip_databases = std::env::split_paths(&v).collect();
        }
        if let Some(v) = var("MERIDIAN_HEALTH_PROBES") {
            self.boot.health.probe = v.parse().map_err(|_| {
                Error::Config(format!(
                    "MERIDIAN_HEALTH_PROBES: {v:?} is not true or false"
                ))
            })?;
        }
        if let Some(v) = var("MERIDIAN_RECONCILE_EVERY_SECONDS") {
            self.replicate.reconcile_every_seconds = Some(v.parse().map_err(|_| {
                Error::Config(format!(
                    "MERIDIAN_RECONCILE_EVERY_SECONDS: {v:?} is not a number of seconds"
                ))
            })?);
        }
        if let Some(v) = var("MERIDIAN_REPLICATE_SUBSCRIPTION") {
            self.replicate.pull_subscription = Some(v);
        }
        if let Some(v) = var("MERIDIAN_INVALIDATION") {
            self.invalidation.via = env_choice("MERIDIAN_INVALIDATION", &v)?;
        }
        if let Some(v) = var("MERIDIAN_INVALIDATION_TOPIC") {
            self.invalidation.topic = v;
        }
        if let Some(v) = var("MERIDIAN_PUBSUB_PROJECT") {
            self.pubsub.project = Some(v);
        }
        if let Some(v) = var("PUBSUB_EMULATOR_HOST") {
            self.pubsub.emulator_host = Some(v);
        }
        if let Some(v) = var("MERIDIAN_SIGNING_ENDPOINT") {
            self.signing.endpoint = v;
        }
        if let Some(v) = var("MERIDIAN_HMAC_ACCESS_ID") {
            self.signing.hmac_access_id = Some(v);
        }
        if let Some(v) = var("MERIDIAN_HMAC_SECRET") {
            self.signing.hmac_secret = Some(v);
        }
        if let Some(v) = var("MERIDIAN_HMAC_SECRET_FILE") {
            self.signing.hmac_secret_file = Some(PathBuf::from(v));
        }
        if let Some(v) = var("MERIDIAN_SERVICE_ACCOUNT_FILE") {
            self.signing.service_account_file = Some(PathBuf::from(v));
        }
        if let Some(v) = var("MERIDIAN_SIGNING_SERVICE_ACCOUNT") {
            self.signing.iam_service_account = Some(v);
        }
        Ok(())
    }

    /// Gives every region without a bucket its default bucket name.
    fn fill_defaults(&mut self) {
        for region in &mut self.regions {
            if region.bucket.is_empty() {
                region.bucket = regions::default_bucket_name(&region.name);
            }
        }
    }

    /// Rejects nonsense with a message naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: String, why: String| Err(Error::Config(format!("{field}: {why}")));
        if self.regions.is_empty() {
            return bad("regions".into(), "at least one region is required".into());
        }
        for (i, region) in self.regions.iter().enumerate() {
            let field = |name: &str| format!("regions[{i}].{name}");
            if region.name.is_empty() {
                return bad(field("name"), "must not be empty".into());
            }
            if self.regions[..i].iter().any(|r| r.name == region.name) {
                return bad(field("name"), format!("{:?} appears twice", region.name));
            }
            if !(region.lat.is_finite() && (-90.0..=90.0).contains(&region.lat)) {
                return bad(field("lat"), format!("{} is outside -90..=90", region.lat));
            }
            if !(region.lon.is_finite() && (-180.0..=180.0).contains(&region.lon)) {
                return bad(
                    field("lon"),
                    format!("{} is outside -180..=180", region.lon),
                );
            }
            if let Err(why) = validate_bucket_name(&region.bucket) {
                return bad(field("bucket"), why);
            }
            if self.regions[..i].iter().any(|r| r.bucket == region.bucket) {
                return bad(
                    field("bucket"),
                    format!("{:?} is used by two regions", region.bucket),
                );
            }
            for (j, edge) in region.edges.iter().enumerate() {
                if let Err(why) = validate_http_url(edge) {
                    return bad(format!("regions[{i}].edges[{j}]"), why);
                }
            }
        }
        if !self.regions.iter().any(|r| r.name == self.main_region) {
            return bad(
                "main_region".into(),
                format!("{:?} is not one of the regions", self.main_region),
            );
        }
        if self.storage.backend == Backend::Gcs
            && let Err(why) = validate_http_url(&self.storage.gcs_endpoint)
        {
            return bad("storage.gcs_endpoint".into(), why);
        }
        if let Err(why) = validate_http_url(&self.signing.endpoint) {
            return bad("signing.endpoint".into(), why);
        }
        if !(1..=604_800).contains(&self.signing.ttl_seconds) {
            return bad(
                "signing.ttl_seconds".into(),
                "must be between 1 and 604800 (7 days)".into(),
            );
        }
        if self.edge.cache_bytes == 0 {
            return bad("edge.cache_bytes".into(), "must be greater than 0".into());
        }
        if self.edge.max_connections == 0
            || self.edge.max_connections_per_address == 0
            || self.edge.max_connections_per_address > self.edge.max_connections
        {
            return bad(
                "edge.max_connections_per_address".into(),
                "both connection limits must be at least 1, the share per address at most the total".into(),
            );
        }
        if self.edge.disk_dir.is_some() && self.edge.disk_bytes < 1024 * 1024 {
            return bad(
                "edge.disk_bytes".into(),
                "must be at least 1048576 (1 MiB) when edge.disk_dir is set".into(),
            );
        }
        if self.edge.stream_threshold_bytes == 0 {
            return bad(
                "edge.stream_threshold_bytes".into(),
                "must be greater than 0".into(),
            );
        }
        if let Some(origin) = &self.edge.origin
            && let Err(why) = validate_http_url(origin)
        {
            return bad("edge.origin".into(), why);
        }
        if self.edge.origin_heuristic_percent > 100 {
            return bad(
                "edge.origin_heuristic_percent".into(),
                "must be between 0 and 100".into(),
            );
        }
        if self.outbound.connect_timeout_ms == 0 {
            return bad(
                "outbound.connect_timeout_ms".into(),
                "must be greater than 0".into(),
            );
        }
        if self.outbound.request_timeout_ms == 0 {
            return bad(
                "outbound.request_timeout_ms".into(),
                "must be greater than 0".into(),
            );
        }
        if self.replicate.reconcile_every_seconds == Some(0) {
            return bad(
                "replicate.reconcile_every_seconds".into(),
                "must be greater than 0 (leave it out for none)".into(),
            );
        }
        if let Some(subscription) = &self.replicate.pull_subscription
            && let Err(why) = validate_pubsub_id(subscription)
        {
            return bad("replicate.pull_subscription".into(), why);
        }
        if !(10..=600).contains(&self.replicate.pull_ack_deadline_seconds) {
            return bad(
                "replicate.pull_ack_deadline_seconds".into(),
                "must be between 10 and 600, as Pub/Sub allows".into(),
            );
        }
        if let Err(why) = validate_pubsub_id(&self.invalidation.topic) {
            return bad("invalidation.topic".into(), why);
        }
        if self.invalidation.subscription_ttl_seconds < 86_400 {
            return bad(
                "invalidation.subscription_ttl_seconds".into(),
                "must be at least 86400 (one day, Pub/Sub's minimum)".into(),
            );
        }
        if self.pubsub.emulator_host.as_deref().is_some_and(|host| {
            host.contains("://")
                || host
                    .rsplit_once(':')
                    .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        }) {
            return bad(
                "pubsub.emulator_host".into(),
                "must be host:port, without a scheme".into(),
            );
        }
        let discovery = &self.boot.discovery;
        if discovery.source == DiscoverySource::Compute {
            if discovery.project.as_deref().is_none_or(str::is_empty) {
                return bad(
                    "boot.discovery.project".into(),
                    "required when boot.discovery.source is \"compute\"".into(),
                );
            }
            if !discovery
                .label
                .split_once('=')
                .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
            {
                return bad(
                    "boot.discovery.label".into(),
                    format!("{:?} must be key=value", discovery.label),
                );
            }
            if discovery.refresh_interval_ms == 0 {
                return bad(
                    "boot.discovery.refresh_interval_ms".into(),
                    "must be greater than 0".into(),
                );
            }
            if let Err(why) = validate_http_url(&discovery.compute_endpoint) {
                return bad("boot.discovery.compute_endpoint".into(), why);
            }
            if !matches!(discovery.edge_scheme.as_str(), "http" | "https") {
                return bad(
                    "boot.discovery.edge_scheme".into(),
                    "must be http or https".into(),
                );
            }
        }
        let location = &self.boot.location;
        if let Some(header) = &location.header
            && http::HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            return bad(
                "boot.location.header".into(),
                format!("{header:?} is not a header name"),
            );
        }
        for (i, network) in location.trusted_proxies.iter().enumerate() {
            if parse_network(network).is_err() {
                return bad(
                    format!("boot.location.trusted_proxies[{i}]"),
                    format!("{network:?} is not an address or a CIDR network"),
                );
            }
        }
        if location.header.is_some() && location.trusted_proxies.is_empty() {
            return bad(
                "boot.location.header".into(),
                "needs boot.location.trusted_proxies: a header from anyone else could be forged"
                    .into(),
            );
        }
        let health = &self.boot.health;
        for (field, value) in [
            ("interval_ms", health.interval_ms),
            ("timeout_ms", health.timeout_ms),
            ("unhealthy_after", u64::from(health.unhealthy_after)),
            ("healthy_after", u64::from(health.healthy_after)),
        ] {
            if value == 0 {
                return bad(
                    format!("boot.health.{field}"),
                    "must be greater than 0".into(),
                );
            }
        }
        if !self.boot.default_location.is_valid() {
            return bad(
                "boot.default_location".into(),
                "lat must be in -90..=90 and lon in -180..=180".into(),
            );
        }
        Ok(())
    }

    /// The region holding the main bucket (validated to exist).
    pub fn main(&self) -> &Region {
        self.regions
            .iter()
            .find(|r| r.name == self.main_region)
            .unwrap_or(&self.regions[0])
    }

    /// The regions that replicate from the main bucket (every region but the main one).
    pub fn replica_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions
            .iter()
            .filter(move |r| r.name != self.main_region)
    }

    /// Looks a region up by name.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }
}

/// A trusted-proxy entry: a CIDR network, or one address (a /32 or /128).
pub fn parse_network(text: &str) -> std::result::Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|e| e.to_string())
}

/// Pub/Sub's rules for topic and subscription ids: 3–255 characters of letters,
/// digits and `-_.~+%`, starting with a letter, not starting with `goog`.
pub fn validate_pubsub_id(id: &str) -> std::result::Result<(), String> {
    if !(3..=255).contains(&id.len()) {
        return Err(format!("{id:?} must be 3 to 255 characters"));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphabetic()) || id.starts_with("goog") {
        return Err(format!(
            "{id:?} must start with a letter and not with \"goog\""
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.~+%".contains(*c)))
    {
        return Err(format!(
            "{id:?} contains {c:?}; use letters, digits and -_.~+%"
        ));
    }
    Ok(())
}

/// Cloud Storage bucket naming rules (the subset that matters here): 3–63 characters
/// of lowercase letters, digits, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn validate_bucket_name(name: &str) -> std::result::Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&name.len()) {
        return Err(format!("bucket name {name:?} must be 3 to 63 characters"));
    }
    if !name.chars().all(ok_char) || !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err(format!(
            "bucket name {name:?} may hold only lowercase letters, digits, '-', '_' and '.', and must start and end with a letter or digit"
        ));
    }
    Ok(())
}

fn validate_http_url(text: &str) -> std::result::Result<(), String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(_) => Err(format!("{text:?} must be an http or https URL with a host")),
        Err(e) => Err(format!("{text:?} is not a URL: {e}")),
    }
}

/// An environment variable naming one of an enum's (serde-spelt) values; the error
/// lists the accepted ones.
fn env_choice<T: serde::de::DeserializeOwned>(name: &str, value: &str) -> Result<T> {
    use serde::de::IntoDeserializer;
    T::deserialize(value.into_deserializer())
        .map_err(|e: serde::de::value::Error| Error::Config(format!("{name}: {e}")))
}

fn secret_from(field: &str, inline: &Option<String>, file: &Option<PathBuf>) -> Result<Vec<u8>> {
    let secret = match (inline, file) {
        (_, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| {
                Error::Config(format!("{field}_file: cannot read {}: {e}", path.display()))
            })?
            .trim()
            .to_string(),
        (Some(value), None) => value.clone(),
        (None, None) => {
            return Err(Error::Config(format!(
                "{field}: not set (set it or {field}_file)"
            )));
        }
    };
    if secret.len() < 16 {
        return Err(Error::Config(format!(
            "{field}: must be at least 16 characters"
        )));
    }
    Ok(secret.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml_str(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let config = Config::from_toml_str("").expect("valid");
        assert_eq!(config, Config::default());
        assert_eq!(config.main().bucket, "meridian-europe-southwest1");
        assert_eq!(config.replica_regions().count(), 9);
    }

    #[test]
    fn regions_parse_with_default_bucket() {
        let config = Config::from_toml_str(
            r#"
            main_region = "a-1"
            [[regions]]
            name = "a-1"
            lat = 1.0
            lon = 2.0
            edges = ["https://127.0.0.1:9000"]
            "#,
        )
        .expect("valid");
        assert_eq!(config.regions[0].bucket, "meridian-a-1");
        assert_eq!(config.regions[0].edges, ["https://127.0.0.1:9000"]);
    }

    #[test]
    fn errors_name_the_offending_field() {
        let lat = err("main_region = \"a\"\n[[regions]]\nname = \"a\"\nlat = 95.0\nlon = 0.0\n");
        assert!(lat.contains("regions[0].lat"), "{lat}");
        let main = err("main_region = \"nowhere\"");
        assert!(main.contains("main_region"), "{main}");
        let edge = err(
            "main_region = \"a\"\n[[regions]]\nname = \"a\"\nlat = 0.0\nlon = 0.0\nedges = [\"ftp://x\"]\n",
        );
        assert!(edge.contains("regions[0].edges[0]"), "{edge}");
        let bucket = err(
            "main_region = \"a\"\n[[regions]]\nname = \"a\"\nlat = 0.0\nlon = 0.0\nbucket = \"UP\"\n",
        );
        assert!(bucket.contains("regions[0].bucket"), "{bucket}");
        let ttl = err("[signing]\nttl_seconds = 0\n");
        assert!(ttl.contains("signing.ttl_seconds"), "{ttl}");
        let unknown = err("[edge]\ncache_bites = 1\n");
        assert!(unknown.contains("cache_bites"), "{unknown}");
        let in_region = err(
            "main_region = \"a\"\n[[regions]]\nname = \"a\"\nlat = 0.0\nlon = 0.0\nlatitude = 1.0\n",
        );
        assert!(in_region.contains("latitude"), "{in_region}");
        let in_location = err("[boot.default_location]\nlat = 1.0\nlon = 2.0\nlatitude = 3.0\n");
        assert!(in_location.contains("latitude"), "{in_location}");
        let reconcile = err("[replicate]\nreconcile_every_seconds = 0\n");
        assert!(
            reconcile.contains("replicate.reconcile_every_seconds"),
            "{reconcile}"
        );
        let timeout = err("[outbound]\nrequest_timeout_ms = 0\n");
        assert!(timeout.contains("outbound.request_timeout_ms"), "{timeout}");
    }

    #[test]
    fn environment_overrides_apply() {
        let mut config = Config::default();
        config
            .apply_env(|key| match key {
                "MERIDIAN_STORAGE_BACKEND" => Some("gcs".into()),
                "MERIDIAN_GCS_ENDPOINT" => Some("http://127.0.0.1:4443".into()),
                "MERIDIAN_JWT_SECRET" => Some("0123456789abcdef".into()),
                _ => None,
            })
            .expect("valid overrides");
        assert_eq!(config.storage.backend, Backend::Gcs);
        assert_eq!(config.storage.gcs_endpoint, "http://127.0.0.1:4443");
        assert_eq!(config.auth.secret().expect("secret"), b"0123456789abcdef");
        let bad = config.apply_env(|key| (key == "MERIDIAN_STORAGE_BACKEND").then(|| "s3".into()));
        let bad = bad.expect_err("unknown backend").to_string();
        assert!(bad.contains("MERIDIAN_STORAGE_BACKEND"), "{bad}");
        assert!(
            bad.contains("`local`, `memory`, `gcs`"),
            "names the choices: {bad}"
        );
    }

    #[test]
    fn purge_keys_come_from_the_config_and_edges_can_derive_theirs() {
        let key = crate::auth::PurgeSigningKey::generate().expect("key");
        let mut auth = AuthConfig::default();
        assert!(
            auth.purge_public_key()
                .expect_err("missing")
                .to_string()
                .contains("auth.purge_public_key")
        );
        auth.purge_private_key = Some(key.to_base64());
        assert_eq!(&auth.purge_public_key().expect("derived"), key.public_key());
        let edge_only = AuthConfig {
            purge_public_key: Some(key.public_key().to_base64()),
            ..AuthConfig::default()
        };
        assert_eq!(
            &edge_only.purge_public_key().expect("given"),
            key.public_key()
        );
        assert!(
            edge_only
                .purge_signing_key()
                .expect_err("an edge holds no private key")
                .to_string()
                .contains("auth.purge_private_key")
        );
    }

    #[test]
    fn gcs_credentials_are_anonymous_only_for_an_emulator() {
        let mut config = Config::default();
        assert_eq!(
            config.storage.effective_gcs_credentials(),
            GoogleCredentials::ApplicationDefault,
            "Google's endpoint gets real credentials"
        );
        config
            .apply_env(|key| (key == "STORAGE_EMULATOR_HOST").then(|| "127.0.0.1:4443".into()))
            .expect("env");
        assert_eq!(config.storage.gcs_endpoint, "http://127.0.0.1:4443");
        assert_eq!(
            config.storage.effective_gcs_credentials(),
            GoogleCredentials::Anonymous
        );
        let explicit = Config::from_toml_str(
            "[storage]\ngcs_endpoint = \"http://127.0.0.1:9\"\ngcs_credentials = \"application-default\"\n",
        )
        .expect("valid");
        assert_eq!(
            explicit.storage.effective_gcs_credentials(),
            GoogleCredentials::ApplicationDefault
        );
        assert!(err("[storage]\ngcs_credentials = \"magic\"\n").contains("magic"));
    }

    #[test]
    fn compute_discovery_needs_a_project_and_a_label() {
        let project = err("[boot.discovery]\nsource = \"compute\"\n");
        assert!(project.contains("boot.discovery.project"), "{project}");
        let label =
            err("[boot.discovery]\nsource = \"compute\"\nproject = \"p\"\nlabel = \"edge\"\n");
        assert!(label.contains("boot.discovery.label"), "{label}");
        let ok = Config::from_toml_str("[boot.discovery]\nsource = \"compute\"\nproject = \"p\"\n")
            .expect("valid");
        assert_eq!(ok.boot.discovery.refresh_interval_ms, 5_000);
    }

    #[test]
    fn pubsub_settings_are_checked_and_read_from_the_environment() {
        let topic = err("[invalidation]\ntopic = \"goog-topic\"\n");
        assert!(topic.contains("invalidation.topic"), "{topic}");
        let chars = err("[replicate]\npull_subscription = \"sub/with/slashes\"\n");
        assert!(chars.contains("replicate.pull_subscription"), "{chars}");
        let deadline = err("[replicate]\npull_ack_deadline_seconds = 5\n");
        assert!(deadline.contains("between 10 and 600"), "{deadline}");
        let ttl = err("[invalidation]\nsubscription_ttl_seconds = 60\n");
        assert!(ttl.contains("one day"), "{ttl}");
        let host = err("[pubsub]\nemulator_host = \"http://127.0.0.1:8085\"\n");
        assert!(host.contains("pubsub.emulator_host"), "{host}");

        let mut config = Config::default();
        config
            .apply_env(|key| match key {
                "MERIDIAN_INVALIDATION" => Some("pubsub".into()),
                "PUBSUB_EMULATOR_HOST" => Some("127.0.0.1:8085".into()),
                "MERIDIAN_REPLICATE_SUBSCRIPTION" => Some("meridian-replicate".into()),
                _ => None,
            })
            .expect("valid overrides");
        config.validate().expect("valid");
        assert_eq!(config.invalidation.via, InvalidationTransport::Pubsub);
        assert_eq!(
            config.pubsub.emulator_host.as_deref(),
            Some("127.0.0.1:8085")
        );
        assert_eq!(
            config.replicate.pull_subscription.as_deref(),
            Some("meridian-replicate")
        );
    }

    #[test]
    fn short_or_missing_secrets_are_refused() {
        let auth = AuthConfig {
            jwt_secret: Some("short".into()),
            ..AuthConfig::default()
        };
        assert!(auth.secret().is_err());
        assert!(
            AuthConfig::default()
                .secret()
                .expect_err("missing")
                .to_string()
                .contains("auth.jwt_secret")
        );
    }
}
