//! Meridian's shared library: everything the functions, the edge and the CLI have in
//! common, so each of them stays a thin layer of HTTP handlers over this crate.
//!
//! # Layout
//! - [`api`]: JSON bodies shared by services and their clients.
//! - [`config`]: the deployment description (TOML + environment) and its validation.
//! - [`outbound`]: time limits on calls to other services.
//! - [`regions`]: the region catalog and great-circle ordering.
//! - [`storage`]: the [`Bucket`] abstraction and its local, in-memory and GCS backends.
//! - [`signing`]: GCS V4 signed URLs (RSA and HMAC), signing and verifying.
//! - [`events`]: Cloud Storage events (`StorageObjectData`, CloudEvent types).
//! - [`body`]: reading small request bodies with a limit, after authorisation.
//! - [`markup`]: escaping text for HTML and XML.
//! - [`auth`]: bearer JWTs for publishers and for edge purges.
//! - [`clock`]: an injectable clock for expiry checks.
//! - [`tls`]: the development certificate authority and rustls server configs.
//! - [`sealed`]: bodies in sealed memory files, which plain HTTP sends without copying.
//! - [`server`]: serving a router on a bound listener with limits and graceful shutdown.
//! - [`telemetry`]: logging, JSON on Cloud Run and human-readable elsewhere.
//! - [`gcp`]: Google Cloud credentials (Application Default Credentials).
//! - [`pubsub`]: Pub/Sub clients, topics and subscriptions (invalidations, storage
//!   notifications).
//! - [`function`]: the Cloud Run shim every binary uses (`$PORT`, SIGTERM).
//! - [`error`]: the crate's error type and its one mapping to HTTP status codes.

pub mod api;
pub mod auth;
pub mod body;
pub mod cert_reload;
pub mod clock;
pub mod config;
pub mod error;
pub mod events;
pub mod function;
pub mod gcp;
pub mod markup;
pub mod metrics;
pub mod outbound;
mod progress;
pub mod pubsub;
pub mod regions;
pub mod sealed;
pub mod server;
pub mod signing;
pub mod storage;
pub mod telemetry;
pub mod tls;

pub use clock::Clock;
pub use config::Config;
pub use error::{Error, Result};
pub use storage::{Bucket, ObjectMeta, ObjectName};
