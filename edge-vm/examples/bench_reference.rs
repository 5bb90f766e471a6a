//! The reference server of `scripts/bench-edge`: the least a Rust HTTP server can do
//! to answer `GET /obj/<name>`, to measure the edge's cost per request against.
//!
//! It loads every file of a folder into memory at start and answers with the bytes and
//! a `Content-Type`, through axum, hyper's HTTP/1.1 and HTTP/2 connection (hyper-util's
//! `auto` builder) and rustls for HTTPS, on tokio's multi-threaded runtime. No cache,
//! no validation of anything, no logs, no metrics, no limits: it is not part of the
//! edge and must never face a network. It binds loopback addresses only.
//!
//! Run: `cargo run --release -p meridian-edge --example bench_reference -- DIR HTTP_ADDR
//! [HTTPS_ADDR CERT_PEM KEY_PEM]`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type Objects = Arc<HashMap<String, Bytes>>;

async fn object(State(objects): State<Objects>, UrlPath(name): UrlPath<String>) -> Response {
    match objects.get(&name) {
        Some(bytes) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

fn load(dir: &Path) -> anyhow::Result<HashMap<String, Bytes>> {
    let mut objects = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            objects.insert(name, Bytes::from(std::fs::read(entry.path())?));
        }
    }
    Ok(objects)
}

async fn listen(addr: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = addr.parse()?;
    anyhow::ensure!(addr.ip().is_loopback(), "{addr} is not a loopback address");
    Ok(TcpListener::bind(addr).await?)
}

/// Accepts connections for ever, each served on its own task; with `tls`, after a
/// TLS handshake.
async fn serve(listener: TcpListener, app: Router, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let builder = Builder::new(TokioExecutor::new());
            let _ = match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Err(_) => return,
                },
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
        });
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 && args.len() != 5 {
        anyhow::bail!("usage: bench_reference DIR HTTP_ADDR [HTTPS_ADDR CERT_PEM KEY_PEM]");
    }
    let objects = load(Path::new(&args[0]))?;
    eprintln!("bench_reference: {} objects loaded", objects.len());
    let app = Router::new()
        .route("/obj/{name}", get(object))
        .with_state(Arc::new(objects));

    let http = tokio::spawn(serve(listen(&args[1]).await?, app.clone(), None));
    if let [_, _, https_addr, cert, key] = &args[..] {
        let pair = meridian_shared::tls::read_pem_pair(Path::new(cert), Path::new(key))?;
        let acceptor = TlsAcceptor::from(meridian_shared::tls::server_config(&pair)?);
        tokio::spawn(serve(listen(https_addr).await?, app, Some(acceptor)));
    }
    http.await?;
    Ok(())
}
