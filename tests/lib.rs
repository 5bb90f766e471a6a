//! Workspace integration tests live in `main.rs`.
