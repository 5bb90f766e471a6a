//! `meridian put FILE [NAME]`: ask sign for an upload URL, then PUT the file to it,
//! streaming with a progress bar.

use std::path::Path;

use futures::TryStreamExt;
use serde::Deserialize;

use super::{Client, check, progress_bar};
use crate::error::{CliError, Result};

/// What an upload produced.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutReport {
    /// Object name.
    pub name: String,
    /// Bytes stored.
    pub size: u64,
    /// Generation assigned.
    pub generation: i64,
    /// MD5, base64.
    pub md5_hash: String,
    /// Content type stored.
    pub content_type: String,
}

#[derive(Deserialize)]
struct Ticket {
    url: String,
    headers: std::collections::BTreeMap<String, String>,
}

/// Uploads `file` as `name` (the file's own name when `None`).
pub async fn put(client: &Client, file: &Path, name: Option<&str>) -> Result<PutReport> {
    let name = match name {
        Some(name) => name.to_string(),
        None => file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let content_type = mime_guess::from_path(file)
        .first_or_octet_stream()
        .essence_str()
        .to_string();
    let cannot_read =
        |e: std::io::Error| CliError::Internal(format!("cannot read {}: {e}", file.display()));
    let size = tokio::fs::metadata(file).await.map_err(cannot_read)?.len();

    let response = client
        .http
        .post(format!("{}/v1/uploads", client.info.sign))
        .bearer_auth(&client.token)
        .json(&serde_json::json!({ "name": name, "content_type": content_type }))
        .send()
        .await?;
    let ticket: Ticket = check("sign", response).await?.json().await?;

    let bar = progress_bar(size, format!("put {name}"));
    let counter = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(
        tokio::fs::File::open(file).await.map_err(cannot_read)?,
        256 * 1024,
    )
    .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
    let mut request = client
        .http
        .put(&ticket.url)
        .header(reqwest::header::CONTENT_LENGTH, size);
    for (header, value) in &ticket.headers {
        request = request.header(header, value);
    }
    let response = request
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    let report = check("upload", response).await?.json().await?;
    bar.finish_and_clear();
    Ok(report)
}
