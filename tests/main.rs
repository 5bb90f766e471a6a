//! Workspace integration tests: real sockets on port 0, real TLS, real HTTP clients,
//! fake-gcs-server for Cloud Storage, the Pub/Sub emulator for Pub/Sub. One crate, so everything links once.
//!
//! # Layout
//! - `integrity`: damaged bucket files and metadata are never passed off as whole.
//! - `pipeline`: changes reach every edge over HTTP and over emulated Pub/Sub, and
//!   survive a killed replicator and an edge that was down.
//! - `harness`: shared helpers (test data, the in-process stack, the binaries).
//! - `storage_suite`: one behaviour suite run on the local, memory and GCS backends.
//! - `sign_blob`: signing through a stand-in IAM Credentials API, as on Cloud Run.
//! - `signing_conformance`: Google's V4 signed-URL conformance cases.
//! - `connection_limits`: silent and idle connections, over TLS, HTTP/1.1 and HTTP/2.
//! - `container_contract`: every binary serves on `$PORT`, logs JSON, drains on SIGTERM.
//! - `convergence`: any mangled event stream plus one sync leaves every region equal.
//! - `credentials`: Cloud Storage credentials against a stand-in token endpoint.
//! - `disk_tier`: the edge's disk across restarts, missed purges and damaged files.
//! - `discovery`: boot's edges from a stand-in Compute Engine API.
//! - `edge_cache`: coalesced streamed misses, conditionals and ranges at the edge.
//! - `end_to_end`: upload, replication to every edge, deletion everywhere.
//! - `purge_auth`: edges take purges only with the replicator's own credential.
//! - `purge_retry`: a purge an edge does not take is retried until it does.
//! - `quick_lane`: plain hits answered before hyper, with the service's fields; the
//!   rest handed to the service with every byte read.
//! - `replication`: event delivery semantics of the replicate function.
//! - `resumable_get`: `meridian get` resumes at the next edge when one dies mid-way.
//! - `routing`: boot answers with live edges only, and redirects curl to the object.
//! - `sync`: `meridian sync` plans, repairs, and is idempotent.
//! - `timeouts`: silent upstreams answer 504 within the configured time.
//! - `upload_security`: signed-URL refusals, bearer tokens, object names.
//! - `zero_copy`: large hits over plain HTTP leave without a copy, byte for byte.

mod cert_reload;
mod connection_limits;
mod container_contract;
mod convergence;
mod credentials;
mod discovery;
mod disk_tier;
mod edge_cache;
mod end_to_end;
mod harness;
mod http_origin;
mod integrity;
mod pipeline;
mod purge_auth;
mod purge_retry;
mod quick_lane;
mod replication;
mod resumable_get;
mod routing;
mod sign_blob;
mod signing_conformance;
mod storage_suite;
mod sync;
mod timeouts;
mod upload_security;
mod zero_copy;
