//! `meridian get NAME [-o FILE]`: ask boot for the nearest edges and try them in
//! order until one answers. A 404 is an answer; connection failures and 5xx move on.

use std::path::Path;

use futures::StreamExt;
use meridian_shared::signing::encode_path;
use tokio::io::AsyncWriteExt;

use super::{Client, check, edges, progress_bar};
use crate::error::{CliError, Result};

/// Where an object came from.
#[derive(Debug)]
pub struct GetReport {
    /// Bytes received.
    pub size: u64,
    /// Region of the edge that answered.
    pub region: String,
    /// That edge.
    pub edge: String,
    /// Its `X-Cache` header.
    pub cache: String,
}

/// Downloads `name` into `output` (stdout when `None`). `location` is an optional
/// (lat, lon) to ask boot about.
pub async fn get(
    client: &Client,
    name: &str,
    output: Option<&Path>,
    location: Option<(f64, f64)>,
) -> Result<GetReport> {
    let edges = edges(client, location).await?;
    let mut tried = Vec::new();
    for edge in &edges.edges {
        let url = format!("{}/{}", edge.url.trim_end_matches('/'), encode_path(name));
        let response = match client.http.get(&url).send().await {
            Ok(response) if response.status().is_server_error() => {
                tried.push(format!("{}: {}", edge.url, response.status()));
                continue;
            }
            Ok(response) => response,
            Err(e) => {
                tried.push(format!("{}: {}", edge.url, e));
                continue;
            }
        };
        let response = check("edge", response).await?;
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let size = write_body(response, name, output).await?;
        return Ok(GetReport {
            size,
            region: edge.region.clone(),
            edge: edge.url.clone(),
            cache,
        });
    }
    Err(CliError::NoEdgeAnswered {
        name: name.to_string(),
        tried: tried.join("; "),
    })
}

/// Streams the body to `output` through a temporary sibling file (renamed when
/// complete, so a failed download never leaves a partial file), or to stdout.
async fn write_body(response: reqwest::Response, name: &str, output: Option<&Path>) -> Result<u64> {
    let bar = progress_bar(
        response.content_length().unwrap_or(0),
        format!("get {name}"),
    );
    let written = match output {
        Some(path) => {
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = path.with_file_name(format!(".{file_name}.part"));
            let mut file = tokio::fs::File::create(&tmp).await?;
            match copy(response, &mut file, &bar).await {
                Ok(written) => {
                    tokio::fs::rename(&tmp, path).await?;
                    written
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
            }
        }
        None => copy(response, &mut tokio::io::stdout(), &bar).await?,
    };
    bar.finish_and_clear();
    Ok(written)
}

async fn copy(
    response: reqwest::Response,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    bar: &indicatif::ProgressBar,
) -> Result<u64> {
    let mut stream = response.bytes_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        out.write_all(&chunk).await?;
        written += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    out.flush().await?;
    Ok(written)
}
