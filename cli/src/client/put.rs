//! `meridian put FILE [NAME]`: ask sign for an upload URL, then PUT the file to it,
//! streaming with a progress bar. The answer is read as Cloud Storage gives it
//! (`x-goog-generation`, `x-goog-hash`, `x-goog-stored-content-length`), so the same
//! client works against a real Cloud Storage signed URL; the stored MD5 is checked
//! against the file's.

use std::path::Path;

use base64::Engine;
use futures::TryStreamExt;
use meridian_shared::api::UploadTicket;

use super::{Client, check, progress_bar};
use crate::error::{CliError, Result};

/// What an upload produced, from Cloud Storage's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PutReport {
    /// Object name.
    pub name: String,
    /// Bytes stored (`x-goog-stored-content-length`).
    pub size: u64,
    /// Generation assigned (`x-goog-generation`).
    pub generation: i64,
    /// MD5 of what was stored, base64 (`x-goog-hash: md5=`).
    pub md5_hash: String,
    /// CRC32C of what was stored, base64 (`x-goog-hash: crc32c=`), when given.
    pub crc32c: Option<String>,
    /// Content type sent.
    pub content_type: String,
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
    let cannot_read = |source: std::io::Error| CliError::ReadFile {
        path: file.display().to_string(),
        source,
    };
    let size = tokio::fs::metadata(file).await.map_err(cannot_read)?.len();

    let response = client
        .http
        .post(format!("{}/v1/uploads", client.info.sign))
        .bearer_auth(&client.token)
        .json(&serde_json::json!({ "name": name, "content_type": content_type }))
        .send()
        .await?;
    let ticket: UploadTicket = check("sign", response).await?.json().await?;

    let bar = progress_bar(size, format!("put {name}"));
    let counter = bar.clone();
    // The stream is moved into the request, so the digest it feeds is shared with it.
    let md5 = std::sync::Arc::new(std::sync::Mutex::new(<md5::Md5 as md5::Digest>::new()));
    let running_md5 = md5.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(
        tokio::fs::File::open(file).await.map_err(cannot_read)?,
        256 * 1024,
    )
    .inspect_ok(move |chunk| {
        counter.inc(chunk.len() as u64);
        // Never contended: only this stream's task and, after it, `put` take it.
        let mut md5 = running_md5.lock().unwrap_or_else(|p| p.into_inner());
        md5::Digest::update(&mut *md5, chunk);
    });
    let method = reqwest::Method::from_bytes(ticket.method.as_bytes())
        .map_err(|_| CliError::Internal(format!("sign asked for method {:?}", ticket.method)))?;
    let mut request = client
        .upload_http
        .request(method, &ticket.url)
        .header(reqwest::header::CONTENT_LENGTH, size);
    for (header, value) in &ticket.headers {
        request = request.header(header, value);
    }
    let response = meridian_shared::outbound::send_streaming_upload(
        request,
        Box::pin(stream),
        client.limits.request_timeout(),
        "upload",
    )
    .await?;
    // The upload client has no read timeout (the upload watched its own silence), so
    // bound reading an error answer here.
    let response = tokio::time::timeout(client.limits.request_timeout(), check("upload", response))
        .await
        .map_err(|_| CliError::Internal("upload: the error answer stalled".into()))??;
    bar.finish_and_clear();
    let report = if response.headers().contains_key("x-goog-generation") {
        read_report(response.headers(), name, content_type)?
    } else {
        // fake-gcs-server (the emulated stack) answers with the JSON object resource
        // instead of Cloud Storage's x-goog headers.
        let body = tokio::time::timeout(client.limits.request_timeout(), response.bytes())
            .await
            .map_err(|_| CliError::Internal("upload: the answer stalled".into()))??;
        read_object_resource(&body, name, content_type)?
    };
    let sent = std::mem::take(&mut *md5.lock().unwrap_or_else(|p| p.into_inner()));
    let sent_md5 = base64::engine::general_purpose::STANDARD.encode(md5::Digest::finalize(sent));
    if report.md5_hash != sent_md5 || report.size != size {
        return Err(CliError::Internal(format!(
            "the upload was stored damaged: sent {size} bytes with MD5 {sent_md5}, stored {} bytes with MD5 {}",
            report.size, report.md5_hash
        )));
    }
    Ok(report)
}

/// Reads an upload answer that is a JSON object resource (`size`, `generation`,
/// `md5Hash`, `crc32c`), as fake-gcs-server sends.
fn read_object_resource(body: &[u8], name: String, content_type: String) -> Result<PutReport> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ObjectResource {
        size: String,
        generation: String,
        md5_hash: String,
        crc32c: Option<String>,
    }
    let object: ObjectResource = serde_json::from_slice(body).map_err(|e| {
        CliError::Internal(format!(
            "the upload answer has no x-goog headers and is not an object resource: {e}"
        ))
    })?;
    let number = |field: &str, text: &str| {
        text.parse::<i64>()
            .map_err(|_| CliError::Internal(format!("the upload answer's {field} is not a number")))
    };
    Ok(PutReport {
        name,
        size: u64::try_from(number("size", &object.size)?).unwrap_or(0),
        generation: number("generation", &object.generation)?,
        md5_hash: object.md5_hash,
        crc32c: object.crc32c,
        content_type,
    })
}

/// Reads Cloud Storage's upload answer.
fn read_report(
    headers: &reqwest::header::HeaderMap,
    name: String,
    content_type: String,
) -> Result<PutReport> {
    let header = |key: &str| {
        headers
            .get(key)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| CliError::Internal(format!("the upload answer has no {key} header")))
    };
    let number = |key: &str| {
        header(key)?
            .parse::<i64>()
            .map_err(|_| CliError::Internal(format!("the upload answer's {key} is not a number")))
    };
    // x-goog-hash comes once per algorithm, or as one comma-separated list.
    let hashes: Vec<(String, String)> = headers
        .get_all("x-goog-hash")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(algorithm, value)| (algorithm.to_string(), value.to_string()))
        .collect();
    let hash = |algorithm: &str| {
        hashes
            .iter()
            .find(|(a, _)| a == algorithm)
            .map(|(_, value)| value.clone())
    };
    Ok(PutReport {
        name,
        size: u64::try_from(number("x-goog-stored-content-length")?).unwrap_or(0),
        generation: number("x-goog-generation")?,
        md5_hash: hash("md5")
            .ok_or_else(|| CliError::Internal("the upload answer has no MD5 hash".into()))?,
        crc32c: hash("crc32c"),
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_storage_upload_headers_are_read() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-goog-generation", "1795673234367070".parse().expect("h"));
        headers.insert("x-goog-stored-content-length", "13".parse().expect("h"));
        headers.append("x-goog-hash", "crc32c=d7sZhg==".parse().expect("h"));
        headers.append(
            "x-goog-hash",
            "md5=IsNoOwlBNsM5g5GuccsPBA==".parse().expect("h"),
        );
        let report = read_report(&headers, "hello.txt".into(), "text/plain".into()).expect("ok");
        assert_eq!(report.generation, 1_795_673_234_367_070);
        assert_eq!(report.size, 13);
        assert_eq!(report.md5_hash, "IsNoOwlBNsM5g5GuccsPBA==");
        assert_eq!(report.crc32c.as_deref(), Some("d7sZhg=="));

        let mut joined = reqwest::header::HeaderMap::new();
        joined.insert("x-goog-generation", "7".parse().expect("h"));
        joined.insert("x-goog-stored-content-length", "1".parse().expect("h"));
        joined.insert(
            "x-goog-hash",
            "crc32c=AAAAAA==, md5=abc=".parse().expect("h"),
        );
        let report = read_report(&joined, "x".into(), "text/plain".into()).expect("ok");
        assert_eq!(report.md5_hash, "abc=");

        let missing = read_report(
            &reqwest::header::HeaderMap::new(),
            "x".into(),
            "text/plain".into(),
        );
        assert!(
            missing
                .expect_err("no headers")
                .to_string()
                .contains("x-goog-stored-content-length")
        );
    }
}
