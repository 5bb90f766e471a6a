//! Workspace integration tests: real sockets on port 0, real TLS, real HTTP clients,
//! fake-gcs-server for Cloud Storage. One crate, so everything links once.
//!
//! # Layout
//! - `harness`: shared helpers (test data, the in-process stack, fake-gcs-server).
//! - `storage_suite`: one behaviour suite run on the local, memory and GCS backends.
//! - `signing_conformance`: Google's V4 signed-URL conformance cases.
//! - `end_to_end`: upload, replication to every edge, deletion everywhere.
//! - `replication`: event delivery semantics of the replicate function.
//! - `upload_security`: signed-URL refusals, bearer tokens, object names.

mod end_to_end;
mod harness;
mod replication;
mod signing_conformance;
mod storage_suite;
mod upload_security;
