//! Workspace integration tests live in `main.rs` and its modules; this library target
//! is empty and exists only so the package has one.
