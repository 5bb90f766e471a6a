//! The CLI's errors: each prints as one line that says what to do.

/// Shorthand for results whose error is [`CliError`].
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// What can go wrong in the CLI and the local stack.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No `stack.json` in the data folder.
    #[error("no stack running at {0}; start one with `meridian up`")]
    NoStack(String),
    /// `stack.json` exists but its services do not answer.
    #[error("no stack running at {0} (stale stack.json?); start one with `meridian up`")]
    StackUnreachable(String),
    /// A fixed port is taken.
    #[error("cannot listen on {addr}: {cause} (is another `meridian up` running? try --port-base)")]
    PortInUse {
        /// The address.
        addr: String,
        /// Why.
        cause: std::io::Error,
    },
    /// A service answered with an error.
    #[error("{service}: {status}: {message}")]
    Remote {
        /// Which service.
        service: &'static str,
        /// HTTP status.
        status: reqwest::StatusCode,
        /// Its message.
        message: String,
    },
    /// No edge answered.
    #[error("no edge answered for {name}: {tried}")]
    NoEdgeAnswered {
        /// The object.
        name: String,
        /// What each edge said.
        tried: String,
    },
    /// A local file cannot be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `stack.json` cannot be parsed.
    #[error("{path} is corrupt (delete it and restart `meridian up`): {source}")]
    CorruptStackFile {
        /// The file.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
    /// Talking HTTP failed.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// From the shared library (config, storage, signing).
    #[error(transparent)]
    Shared(#[from] meridian_shared::Error),
    /// Local I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}
