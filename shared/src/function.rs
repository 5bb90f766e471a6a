//! The Cloud Run shim every binary shares: serve a router on `$PORT` (8080 when
//! unset, as Cloud Run sets it), with request metrics at `/metrics`, and drain on
//! SIGTERM or Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;

use crate::error::{Error, Result};
use crate::server::{self, ServeOptions};

/// The port Cloud Run tells the service to listen on.
pub fn port_from_env() -> Result<u16> {
    match std::env::var("PORT") {
        Ok(text) => text
            .parse()
            .map_err(|_| Error::Config(format!("PORT: {text:?} is not a port number"))),
        Err(_) => Ok(8080),
    }
}

/// The whole life of a function binary: init logging, load the config named by
/// `MERIDIAN_CONFIG` (the embedded default when unset), build the router, serve it.
/// A failure is logged as one line (a JSON entry on Cloud Run) and exits with 1.
pub async fn main<F, Fut>(service: &'static str, build: F) -> std::process::ExitCode
where
    F: FnOnce(crate::Config) -> Fut,
    Fut: std::future::Future<Output = Result<Router>>,
{
    crate::telemetry::init();
    crate::tls::install_crypto_provider();
    let started = async {
        let path = std::env::var_os("MERIDIAN_CONFIG").map(std::path::PathBuf::from);
        let config = crate::Config::load(path.as_deref())?;
        let router = build(config).await?;
        run(service, router).await
    };
    match started.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(service, cause = %e, "cannot run");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Binds `0.0.0.0:$PORT` and serves `router` until SIGTERM or Ctrl-C, its requests
/// counted at `/metrics` as `service`'s.
pub async fn run(service: &'static str, router: Router) -> Result<()> {
    let router = crate::metrics::instrument(router, service);
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port_from_env()?));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(service, %addr, "listening");
    server::serve(
        listener,
        router,
        None,
        ServeOptions::default(),
        shutdown_signal(),
    )
    .await?;
    tracing::info!(service, "stopped");
    Ok(())
}

/// Resolves on SIGTERM (what Cloud Run and Compute Engine send) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received, draining");
}
