//! `stack.json` in the data folder: where a running local stack listens, so that
//! `meridian put/get/rm/edges` find it without being told.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// Where everything of a running local stack is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackInfo {
    /// Process id of `meridian up`.
    pub pid: u32,
    /// The data folder.
    pub data_dir: PathBuf,
    /// The development CA certificate (for `curl --cacert`).
    pub ca_cert: PathBuf,
    /// boot base URL.
    pub boot: String,
    /// sign base URL.
    pub sign: String,
    /// delete base URL.
    pub delete: String,
    /// replicate base URL.
    pub replicate: String,
    /// Storage gateway base URL.
    pub gateway: String,
    /// One edge per region.
    pub edges: Vec<EdgeInfo>,
    /// The emulators the stack runs on (`meridian up --gcp-emulators`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulators: Option<EmulatorInfo>,
}

/// Where the emulators of an emulated stack are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulatorInfo {
    /// fake-gcs-server's endpoint.
    pub storage: String,
    /// The Pub/Sub emulator's `host:port`.
    pub pubsub: String,
}

/// One edge of the local stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeInfo {
    /// Region name.
    pub region: String,
    /// City.
    pub city: String,
    /// Base URL.
    pub url: String,
}

impl StackInfo {
    /// The file's path in a data folder.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("stack.json")
    }

    /// Writes the file atomically.
    pub fn write(&self) -> Result<()> {
        let path = StackInfo::path(&self.data_dir);
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }

    /// Reads the file; a missing file means no stack was started here.
    pub fn read(data_dir: &Path) -> Result<StackInfo> {
        let path = StackInfo::path(data_dir);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CliError::NoStack(data_dir.display().to_string()),
            _ => CliError::Io(e),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| CliError::CorruptStackFile {
            path: path.display().to_string(),
            source,
        })
    }

    /// Removes the file (on shutdown), if it is still ours.
    pub fn remove(&self) {
        if StackInfo::read(&self.data_dir).is_ok_and(|on_disk| on_disk.pid == self.pid) {
            let _ = std::fs::remove_file(StackInfo::path(&self.data_dir));
        }
    }
}
