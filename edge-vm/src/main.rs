//! `meridian-edge`: one edge server, as run on an edge VM. Serves HTTPS when given a
//! certificate, plain HTTP otherwise (behind a TLS-terminating load balancer). In front
//! of its region's bucket, or, with `--origin`, of any HTTP server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use meridian_shared::config::InvalidationTransport;

/// Small allocations, a dozen per request, cost far less than with the system's
/// malloc (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves objects from one region's bucket, or any HTTP origin, with a memory cache.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Region this edge belongs to (its bucket comes from the config). Optional with
    /// an HTTP origin, where it only labels the edge.
    #[arg(long, env = "MERIDIAN_EDGE_REGION", required_unless_present = "origin")]
    region: Option<String>,
    /// An HTTP origin (`http://host:port`): the edge becomes a reverse proxy cache in
    /// front of it instead of serving the bucket. Overrides `edge.origin`.
    #[arg(long, env = "MERIDIAN_EDGE_ORIGIN")]
    origin: Option<String>,
    /// Deployment config (TOML); the embedded default when absent.
    #[arg(long, env = "MERIDIAN_CONFIG")]
    config: Option<PathBuf>,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8443)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "MERIDIAN_EDGE_ADDR", default_value = "0.0.0.0")]
    addr: std::net::IpAddr,
    /// PEM certificate chain; with --tls-key, the edge serves HTTPS.
    #[arg(long, env = "MERIDIAN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "MERIDIAN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A directory for the disk tier (responses kept across restarts). Overrides
    /// `edge.disk_dir`.
    #[arg(long, env = "MERIDIAN_EDGE_DISK_DIR")]
    disk_dir: Option<PathBuf>,
    /// This edge's id, unique in its region: names its invalidation subscription when
    /// `invalidation.via` is `pubsub`. Default: the host name (the VM's name).
    #[arg(long, env = "MERIDIAN_EDGE_ID")]
    id: Option<String>,
}

/// How long the edge waits for the invalidations published while it was down before
/// it serves anyway.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How often the certificate files are looked at for a new pair.
const CERTIFICATE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    meridian_shared::telemetry::init();
    meridian_shared::tls::install_crypto_provider();
    // A failed start is one log line (a JSON entry on Google Cloud) and exit code 1.
    match serve(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = format!("{e:#}"), "edge cannot run");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let mut config = meridian_shared::Config::load(args.config.as_deref())?;
    if let Some(origin) = args.origin {
        config.edge.origin = Some(origin);
    }
    if let Some(dir) = args.disk_dir {
        config.edge.disk_dir = Some(dir);
    }
    config.validate()?;
    let state = match (&config.edge.origin, &args.region) {
        (Some(origin), region) => {
            let label = region.as_deref().unwrap_or("origin");
            // A proxy cache of its own needs no purges; one in a Meridian deployment
            // has the replicator's key.
            let purge_key = match config.auth.purge_public_key() {
                Ok(key) => Some(key),
                Err(why) => {
                    tracing::warn!(cause = %why, "no purge key: this edge takes no purges");
                    None
                }
            };
            meridian_edge::EdgeState::for_http_origin(
                label,
                origin,
                &config.edge,
                &config.outbound,
                purge_key.as_ref(),
            )?
        }
        (None, Some(name)) => {
            let purge_key = config.auth.purge_public_key()?;
            let region = config
                .region(name)
                .with_context(|| format!("--region: {name:?} is not a configured region"))?;
            let bucket = meridian_shared::storage::open(&config, &region.bucket).await?;
            meridian_edge::EdgeState::new(&region.name, bucket, &config.edge, &purge_key)?
        }
        (None, None) => anyhow::bail!("--region is needed to serve a bucket (or give --origin)"),
    };
    // Over Pub/Sub, the edge subscribes before it serves, so it misses no change.
    let invalidations = match config.invalidation.via {
        InvalidationTransport::Pubsub => {
            let id = match args.id {
                Some(id) => id,
                None => host_name()?,
            };
            let listener =
                meridian_edge::InvalidationListener::start(&config, &id, state.clone()).await?;
            // With a disk tier, what was published while the edge was down is applied
            // before it serves, so it serves its disk without asking the origin. If that
            // takes too long, it serves anyway, revalidating what it found on disk.
            if tokio::time::timeout(BACKLOG_WAIT, listener.backlog_applied())
                .await
                .is_err()
            {
                tracing::warn!(
                    seconds = BACKLOG_WAIT.as_secs(),
                    "invalidations published while down still not applied: serving, copies found on disk are revalidated until they are"
                );
            }
            Some(listener)
        }
        InvalidationTransport::Http => None,
    };
    // The certificate follows its files, so it can be rotated without a restart.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(meridian_shared::cert_reload::reloading_server_config(
            cert,
            key,
            CERTIFICATE_CHECK_EVERY,
        )?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind((args.addr, args.port)).await?;
    tracing::info!(
        region = %state.region(),
        origin = config.edge.origin.as_deref().unwrap_or("bucket"),
        addr = %listener.local_addr()?,
        https = tls.is_some(),
        "edge listening"
    );
    meridian_edge::run(
        listener,
        tls,
        state.clone(),
        meridian_shared::function::shutdown_signal(),
    )
    .await?;
    if let Some(invalidations) = invalidations {
        if state.has_disk_tier() {
            // Back with its disk, the edge finds here what it must purge from it.
            tracing::info!(
                subscription = invalidations.subscription_id(),
                "invalidation subscription kept for the next start"
            );
            invalidations.abandon().await;
        } else {
            invalidations.stop().await?;
        }
    }
    Ok(())
}

/// The machine's host name: on Compute Engine, the instance name, unique in a project.
fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the host name for the edge id (or pass --id)")?;
    Ok(name.trim().to_string())
}
