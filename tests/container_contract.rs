//! The container contract of every binary, checked on the binaries themselves (there
//! is no container engine on our machines): with `PORT` set it serves there, with
//! `K_SERVICE` set (Cloud Run's variable) every log line is JSON, and on SIGTERM it
//! drains and exits 0 within 10 s, as Cloud Run and managed instance groups expect.
//!
//! `scripts/test` builds the binaries before the suite runs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_shared::auth::PurgeSigningKey;

use crate::harness::{binary, free_port};

/// Runs `name` as a container would, checks it serves `/healthz` on `$PORT`, stops it
/// with SIGTERM and returns its log lines.
async fn contract(name: &str, extra_env: &[(&str, String)]) -> Vec<serde_json::Value> {
    let data = tempfile::tempdir().expect("tempdir");
    let config = data.path().join("meridian.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nroot = {:?}\n",
            data.path().join("buckets").display().to_string()
        ),
    )
    .expect("config");
    let port = free_port();
    let mut child = Command::new(binary(name))
        .env_clear()
        .env("PORT", port.to_string())
        .env("K_SERVICE", name)
        .env("MERIDIAN_CONFIG", &config)
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });

    let http = reqwest::Client::new();
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    loop {
        if let Ok(response) = http.get(&healthz).send().await
            && response.status() == 200
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited with {status}: {:?}", lines.join());
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{name} never served on $PORT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let asked = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "{name} still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{name} exited with {exit}");

    let lines = lines.join().expect("log reader");
    assert!(!lines.is_empty(), "{name} logged nothing");
    lines
        .iter()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {line}"));
            assert!(
                entry["severity"].is_string() && entry["message"].is_string(),
                "a Cloud Logging entry with a severity: {line}"
            );
            entry
        })
        .collect()
}

fn said(log: &[serde_json::Value], message: &str) -> bool {
    log.iter().any(|entry| entry["message"] == message)
}

#[test]
fn a_failed_start_is_one_json_line_and_exit_code_1() {
    for name in ["meridian-sign", "meridian-edge"] {
        // Neither has its key: sign no signing key, the edge no purge key.
        let output = Command::new(binary(name))
            .env_clear()
            .env("K_SERVICE", name)
            .env("PORT", free_port().to_string())
            .env("MERIDIAN_STORAGE_BACKEND", "memory")
            .env("MERIDIAN_EDGE_REGION", "europe-southwest1")
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(!lines.is_empty(), "{name} said nothing");
        for line in lines {
            let entry: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {line}"));
            assert_eq!(entry["severity"], "ERROR", "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_keeps_the_container_contract() {
    let jwt = (
        "MERIDIAN_JWT_SECRET",
        "0123456789abcdef0123456789abcdef".to_string(),
    );
    let purge = PurgeSigningKey::generate().expect("key");
    let functions: [(&str, Vec<(&str, String)>); 4] = [
        ("meridian-boot", vec![]),
        (
            "meridian-sign",
            vec![
                jwt.clone(),
                ("MERIDIAN_HMAC_ACCESS_ID", "contract-test".into()),
                (
                    "MERIDIAN_HMAC_SECRET",
                    "0123456789abcdef0123456789abcdef".into(),
                ),
            ],
        ),
        ("meridian-delete", vec![jwt.clone()]),
        (
            "meridian-replicate",
            vec![("MERIDIAN_PURGE_PRIVATE_KEY", purge.to_base64())],
        ),
    ];
    for (name, env) in &functions {
        let log = contract(name, env).await;
        assert!(said(&log, "listening"), "{name}: {log:?}");
        assert!(said(&log, "stopped"), "{name}: {log:?}");
    }
    let log = contract(
        "meridian-edge",
        &[
            ("MERIDIAN_EDGE_REGION", "europe-southwest1".into()),
            ("MERIDIAN_EDGE_ADDR", "127.0.0.1".into()),
            ("MERIDIAN_PURGE_PUBLIC_KEY", purge.public_key().to_base64()),
        ],
    )
    .await;
    assert!(said(&log, "edge listening"), "{log:?}");
}
