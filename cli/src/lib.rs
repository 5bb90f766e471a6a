//! The `meridian` command: the local stack (`meridian up`), the client commands
//! (`put`, `get`, `rm`, `edges`) and the cost model (`cost`).
//!
//! # Layout
//! - [`stack`]: starting and stopping the whole CDN in one process.
//! - [`gateway`]: the local storage gateway (signed-URL uploads).
//! - [`emulators`]: fake-gcs-server and the Pub/Sub emulator, wired as Google Cloud.
//! - [`local`]: the data folder's secrets and CA trust, shared by stack and clients.
//! - [`notify`]: storage events from the local main bucket to the replicator.
//! - [`sync`]: `meridian sync`, repairing regional buckets (anti-entropy).
//! - [`stackfile`]: `stack.json`, how client commands find a running stack.
//! - [`cost`]: what a deployment costs on Google Cloud, from a usage model.
//! - [`client`]: the client commands.
//! - [`error`]: one-line errors.

pub mod client;
pub mod cost;
pub mod emulators;
pub mod error;
pub mod gateway;
pub mod local;
pub mod notify;
pub mod stack;
pub mod stackfile;
pub mod sync;

pub use error::{CliError, Result};
pub use stack::{Ports, RunningStack, StackOptions};
pub use stackfile::StackInfo;
