//! The `meridian` client commands, talking to a running local stack over HTTP exactly
//! as any other client would: sign then PUT, ask boot then try edges, DELETE.
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
use meridian_shared::tls::DevCa;

pub use edges::edges;
pub use get::{GetReport, get};
pub use put::{PutReport, put};
pub use rm::rm;

use crate::error::{CliError, Result};
use crate::stack::{LocalSecrets, trusting_client};
use crate::stackfile::StackInfo;

/// A connection to a running local stack.
pub struct Client {
    http: reqwest::Client,
    info: StackInfo,
    token: String,
}

impl Client {
    /// Finds the stack whose data folder is `data_dir` and checks that it answers.
    /// The publisher token comes from `MERIDIAN_TOKEN`, else is minted from the
    /// stack's own secret (the data folder is the local trust boundary).
    pub async fn connect(data_dir: &Path) -> Result<Client> {
        let info = StackInfo::read(data_dir)?;
        let ca = DevCa::load_or_create(data_dir)?;
        let http = trusting_client(&ca)?;
        let health = http
            .get(format!("{}/healthz", info.boot))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
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
        Ok(Client { http, info, token })
    }

    /// The stack this client talks to.
    pub fn info(&self) -> &StackInfo {
        &self.info
    }
}

/// Turns a non-2xx response into [`CliError::Remote`] with the service's message.
async fn check(service: &'static str, response: reqwest::Response) -> Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or(text);
    Err(CliError::Remote {
        service,
        status,
        message,
    })
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
