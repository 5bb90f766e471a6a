//! `meridian get NAME [-o FILE]`: ask boot for the nearest edges and try them in
//! order until one answers. A 404 is an answer; a refused connection, a timeout (to
//! connect, or for the first byte: `--connect-timeout`, `--timeout`) or a 5xx moves on
//! to the next edge. When an edge dies mid-download, the next one resumes with a Range
//! request from the byte already received (`If-Range` with the object's ETag, so a
//! changed object is fetched whole again). The result is checked against the object's
//! MD5 (its ETag) before it is kept.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use md5::Digest;
use meridian_shared::signing::encode_path;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use tokio::io::AsyncWriteExt;

use super::{Client, check, edges, progress_bar};
use crate::error::{CliError, Result};

/// Where an object came from.
#[derive(Debug)]
pub struct GetReport {
    /// Bytes received.
    pub size: u64,
    /// Region of the edge that answered (last).
    pub region: String,
    /// That edge.
    pub edge: String,
    /// Its `X-Cache` header.
    pub cache: String,
    /// Where the download resumed after an edge failed mid-way, if it did.
    pub resumed_at: Option<u64>,
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
    let mut sink = Sink::open(output).await?;
    let mut object: Option<Object> = None;
    let mut resumed_at = None;
    let mut tried = Vec::new();
    let bar = progress_bar(0, format!("get {name}"));
    for edge in &edges.edges {
        let url = format!("{}/{}", edge.url.trim_end_matches('/'), encode_path(name));
        let mut request = client.http.get(&url);
        let resuming = match &object {
            Some(known) if sink.written > 0 => {
                request = request
                    .header(RANGE, format!("bytes={}-", sink.written))
                    .header(IF_RANGE, &known.etag);
                true
            }
            _ => false,
        };
        let response = match request.send().await {
            Ok(response) if response.status().is_server_error() => {
                tried.push(format!("{}: {}", edge.url, response.status()));
                continue;
            }
            Ok(response) => response,
            Err(e) => {
                tried.push(format!(
                    "{}: {}",
                    edge.url,
                    meridian_shared::error::Chain(&e)
                ));
                continue;
            }
        };
        let response = check("edge", response).await?;
        let answered = Object::of(&response)?;
        match (resuming, response.status()) {
            (true, StatusCode::PARTIAL_CONTENT) => {
                let from = resume_offset(&response)?;
                if from != sink.written {
                    return Err(CliError::Internal(format!(
                        "{}: resumed at byte {from}, asked for {}",
                        edge.url, sink.written
                    )));
                }
                resumed_at = Some(from);
            }
            // The object changed since the first edge answered: start over.
            (true, _) => {
                sink.restart().await?;
                object = Some(answered);
            }
            (false, _) => object = Some(answered),
        }
        let total = object.as_ref().map_or(0, |o| o.size);
        bar.set_length(total);
        bar.set_position(sink.written);
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let mut body = response.bytes_stream();
        let mut broke = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    sink.write(&chunk).await?;
                    bar.inc(chunk.len() as u64);
                }
                Err(e) => {
                    broke = Some(meridian_shared::error::Chain(&e).to_string());
                    break;
                }
            }
        }
        if let Some(why) = broke {
            tried.push(format!(
                "{}: broke off after {} bytes: {why}",
                edge.url, sink.written
            ));
            continue;
        }
        bar.finish_and_clear();
        let object = object
            .as_ref()
            .ok_or_else(|| CliError::Internal("no object".into()))?;
        sink.finish(object).await?;
        return Ok(GetReport {
            size: sink.written,
            region: edge.region.clone(),
            edge: edge.url.clone(),
            cache,
            resumed_at,
        });
    }
    bar.finish_and_clear();
    sink.abandon().await;
    Err(CliError::NoEdgeAnswered {
        name: name.to_string(),
        tried: tried.join("; "),
    })
}

/// What the edges say the object is.
#[derive(Debug)]
struct Object {
    /// Its ETag, as sent (quoted): the content MD5 in hex, the same at every edge.
    etag: String,
    /// Its length.
    size: u64,
}

impl Object {
    fn of(response: &reqwest::Response) -> Result<Object> {
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| CliError::Internal("the edge sent no ETag".into()))?
            .to_string();
        let size = match response.headers().get(CONTENT_RANGE) {
            // bytes 100-199/1000: the whole object's length is after the slash.
            Some(range) => range
                .to_str()
                .ok()
                .and_then(|r| r.rsplit('/').next())
                .and_then(|total| total.parse().ok()),
            None => response.content_length(),
        }
        .ok_or_else(|| CliError::Internal("the edge sent no length".into()))?;
        Ok(Object { etag, size })
    }
}

/// The first byte of a 206 answer's range.
fn resume_offset(response: &reqwest::Response) -> Result<u64> {
    response
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes "))
        .and_then(|r| r.split('-').next())
        .and_then(|start| start.parse().ok())
        .ok_or_else(|| CliError::Internal("a 206 answer without a usable Content-Range".into()))
}

/// Where the bytes go: a temporary sibling of the output file (renamed when complete
/// and verified, so a failed download never leaves a partial file), or stdout.
struct Sink {
    file: Option<(tokio::fs::File, PathBuf, PathBuf)>,
    md5: md5::Md5,
    written: u64,
}

impl Sink {
    async fn open(output: Option<&Path>) -> Result<Sink> {
        let file = match output {
            Some(path) => {
                let file_name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let tmp = path.with_file_name(format!(".{file_name}.part"));
                Some((
                    tokio::fs::File::create(&tmp).await?,
                    tmp,
                    path.to_path_buf(),
                ))
            }
            None => None,
        };
        Ok(Sink {
            file,
            md5: md5::Md5::new(),
            written: 0,
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        match &mut self.file {
            Some((file, _, _)) => file.write_all(chunk).await?,
            None => tokio::io::stdout().write_all(chunk).await?,
        }
        self.md5.update(chunk);
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Forgets what was written (the object changed): only possible into a file.
    async fn restart(&mut self) -> Result<()> {
        let Some((file, _, _)) = &mut self.file else {
            return Err(CliError::Internal(
                "the object changed during the download and stdout cannot be rewound; try again"
                    .into(),
            ));
        };
        file.set_len(0).await?;
        tokio::io::AsyncSeekExt::seek(file, std::io::SeekFrom::Start(0)).await?;
        self.md5 = md5::Md5::new();
        self.written = 0;
        Ok(())
    }

    /// Checks length and MD5 against `object`, then keeps the file. (An object stored
    /// without an MD5, such as a Cloud Storage composite, has another ETag; only its
    /// length can be checked.)
    async fn finish(&mut self, object: &Object) -> Result<()> {
        let md5 = hex::encode(std::mem::take(&mut self.md5).finalize());
        let expected = object.etag.trim_matches('"');
        let has_md5 = expected.len() == 32 && expected.bytes().all(|b| b.is_ascii_hexdigit());
        if self.written != object.size || (has_md5 && md5 != expected) {
            self.abandon().await;
            return Err(CliError::Internal(format!(
                "the download is damaged: {} bytes with MD5 {md5}, the object has {} bytes with MD5 {expected}",
                self.written, object.size
            )));
        }
        match self.file.take() {
            Some((mut file, tmp, path)) => {
                file.flush().await?;
                tokio::fs::rename(&tmp, &path).await?;
            }
            None => tokio::io::stdout().flush().await?,
        }
        Ok(())
    }

    /// Removes the temporary file.
    async fn abandon(&mut self) {
        if let Some((_, tmp, _)) = self.file.take() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
    }
}
