//! The `meridian` client commands, talking to a running local stack over HTTP exactly
//! as any other client would: sign then PUT, ask boot then try edges, DELETE. They
//! know the stack only through its `stack.json` and data folder, never its code.
//!
//! # Layout
//! - `put`, `get`, `rm`, `edges`: one file per command.
//! - this file: finding the stack, tokens, and reading error bodies.

mod edges;
mod get;
mod put;
mod rm;

use std::path::Path;
use std::time::Duration;

use meridian_shared::auth::{self, TokenScope};
use meridian_shared::config::OutboundSettings;
use meridian_shared::tls::DevCa;

pub use edges::{edges, status};
pub use get::{GetReport, get};
pub use put::{PutReport, put};
pub use rm::rm;

use crate::error::{CliError, Result};
use crate::local::{LocalSecrets, trusting_client, trusting_upload_client};
use crate::stackfile::StackInfo;

/// A connection to a running local stack.
pub struct Client {
    http: reqwest::Client,
    upload_http: reqwest::Client,
    limits: OutboundSettings,
    info: StackInfo,
    token: String,
}

impl Client {
    /// Finds the stack whose data folder is `data_dir` and checks that it answers.
    /// Every call is bounded by `limits` (limits on silence: a large transfer that
    /// keeps moving is never cut). The publisher token comes from `MERIDIAN_TOKEN`,
    /// else is minted from the stack's own secret (the data folder is the local trust
    /// boundary).
    pub async fn connect(data_dir: &Path, limits: OutboundSettings) -> Result<Client> {
        let info = StackInfo::read(data_dir)?;
        let ca = DevCa::load_or_create(data_dir)?;
        let http = trusting_client(&ca, &limits)?;
        let upload_http = trusting_upload_client(&ca, &limits)?;
        let health = http.get(format!("{}/healthz", info.boot)).send().await;
        if !health.is_ok_and(|r| r.status().is_success()) {
            return Err(CliError::StackUnreachable(info.boot.clone()));
        }
        let token = match std::env::var("MERIDIAN_TOKEN") {
            Ok(token) => token,
            Err(_) => {
                let secret = LocalSecrets::load_or_create(data_dir)?.jwt;
                auth::mint(
                    secret.as_bytes(),
                    "meridian-cli",
                    &[TokenScope::Publish],
                    auth::unix_now(),
                    Duration::from_secs(600),
                )?
            }
        };
        Ok(Client {
            http,
            upload_http,
            limits,
            info,
            token,
        })
    }
}

/// Turns a non-2xx response into [`CliError::Remote`] with the service's message: the
/// `error` of a JSON body, the `Details` (else `Message`) of a Cloud Storage XML error
/// document, or the text as it came.
async fn check(service: &'static str, response: reqwest::Response) -> Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .or_else(|| xml_error(&text))
        .unwrap_or(text);
    Err(CliError::Remote {
        service,
        status,
        message,
    })
}

/// `Code: Details` from a Cloud Storage XML error document (`Message` when it has no
/// details).
fn xml_error(text: &str) -> Option<String> {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&format!("</{name}>"))?;
        Some(text[start..end].to_string())
    };
    let code = element("Code")?;
    let reason = element("Details").or_else(|| element("Message"))?;
    Some(format!("{code}: {reason}"))
}

/// A byte-progress bar on stderr (drawn only when stderr is a terminal).
fn progress_bar(total: u64, message: String) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    indicatif::ProgressBar::new(total)
        .with_style(style)
        .with_message(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_storage_error_documents_are_read() {
        let document = "<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message><Details>signed URL expired at 2026-11-26T10:00:00+00:00</Details></Error>";
        assert_eq!(
            xml_error(document).as_deref(),
            Some("ExpiredToken: signed URL expired at 2026-11-26T10:00:00+00:00")
        );
        assert_eq!(xml_error("plain text"), None);
    }
}
