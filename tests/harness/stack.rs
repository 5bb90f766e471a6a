//! The whole local stack in-process, every listener on port 0, data in a temporary
//! folder, plus clients that trust its development CA and hold valid tokens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use meridian_cli::emulators::{FakeGcsData, GcpEmulators};
use meridian_cli::local::{LocalSecrets, trusting_client};
use meridian_cli::stack;
use meridian_cli::{Ports, RunningStack, StackOptions};
use meridian_shared::Config;
use meridian_shared::auth::{self, TokenScope};
use meridian_shared::tls::DevCa;

/// A running stack and what tests need to talk to it.
pub struct TestStack {
    /// The stack.
    pub stack: RunningStack,
    /// HTTP client trusting the stack's CA.
    pub http: reqwest::Client,
    /// Valid publisher token.
    pub token: String,
    /// The folder holding the data folder (so tests can check nothing lands beside it).
    pub parent: tempfile::TempDir,
}

impl TestStack {
    /// Starts a stack with the default ten regions.
    pub async fn start() -> TestStack {
        TestStack::start_with(None).await
    }

    /// Starts a stack with the default ten regions on emulated Google Cloud: buckets in
    /// fake-gcs-server, notifications and invalidations through the Pub/Sub emulator.
    /// Fails (never skips) when the emulators are missing.
    pub async fn start_on_emulators() -> TestStack {
        let emulators = GcpEmulators::start(&Config::default(), FakeGcsData::Memory)
            .await
            .unwrap_or_else(|e| panic!("the emulators must run here: {e}"));
        TestStack::start_with(Some(emulators)).await
    }

    async fn start_with(emulators: Option<GcpEmulators>) -> TestStack {
        let parent = tempfile::tempdir().expect("tempdir");
        let data_dir = parent.path().join("data");
        let stack = stack::start(StackOptions {
            data_dir: data_dir.clone(),
            ports: Ports::Ephemeral,
            config: Config::default(),
            emulators,
        })
        .await
        .expect("stack starts");
        let http = trusting_client(
            &DevCa::load_or_create(&data_dir).expect("ca"),
            &Default::default(),
        )
        .expect("client");
        let token = auth::mint(
            TestStack::jwt_secret_of(&data_dir).as_bytes(),
            "tests",
            &[TokenScope::Publish],
            auth::unix_now(),
            Duration::from_secs(600),
        )
        .expect("token");
        TestStack {
            stack,
            http,
            token,
            parent,
        }
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.stack.info().data_dir.clone()
    }

    /// The stack's token secret.
    pub fn jwt_secret_of(data_dir: &Path) -> String {
        LocalSecrets::load_or_create(data_dir).expect("secrets").jwt
    }

    /// The secrets the stack made for itself.
    pub fn secrets(&self) -> LocalSecrets {
        LocalSecrets::load_or_create(&self.data_dir()).expect("secrets")
    }

    /// The stack's signed-URL HMAC secret.
    pub fn hmac_secret(&self) -> String {
        self.secrets().hmac
    }

    /// Asks sign for an upload URL; returns the response.
    pub async fn sign(
        &self,
        name: &str,
        content_type: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/v1/uploads", self.stack.info().sign))
            .json(&serde_json::json!({"name": name, "content_type": content_type}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("sign answers")
    }

    /// Asks sign for an upload URL and returns `(url, content_type)`.
    pub async fn ticket(&self, name: &str, content_type: &str) -> String {
        let response = self.sign(name, content_type, Some(&self.token)).await;
        assert_eq!(
            response.status(),
            200,
            "sign refused: {}",
            response.text().await.unwrap_or_default()
        );
        let ticket: serde_json::Value = response.json().await.expect("json");
        assert_eq!(ticket["method"], "PUT");
        assert_eq!(ticket["headers"]["content-type"], content_type);
        ticket["url"].as_str().expect("url").to_string()
    }

    /// PUTs `body` to a signed URL.
    pub async fn upload(&self, url: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .put(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("gateway answers")
    }

    /// Deletes an object (name already URL-encoded) through the delete function.
    pub async fn delete(&self, encoded_name: &str) -> reqwest::StatusCode {
        let url = format!("{}/v1/objects/{encoded_name}", self.stack.info().delete);
        let response = self.http.delete(url).bearer_auth(&self.token).send().await;
        response.expect("delete answers").status()
    }

    /// GETs `url` and parses the JSON answer.
    pub async fn get_json(&self, url: &str) -> serde_json::Value {
        let response = self.http.get(url).send().await.expect("server answers");
        response.json().await.expect("JSON body")
    }

    /// The status of a GET of `url`.
    pub async fn status_of(&self, url: &str) -> reqwest::StatusCode {
        self.http
            .get(url)
            .send()
            .await
            .expect("server answers")
            .status()
    }

    /// A signed PUT URL minted here with the stack's own key, bypassing the sign
    /// function's checks (to test what the gateway itself refuses).
    pub fn mint_upload_url(
        &self,
        object: &str,
        content_type: &str,
        signed_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        use meridian_shared::signing::{self, SignRequest, SigningKey, UrlStyle};
        let (scheme, authority) =
            signing::endpoint_parts(&self.stack.info().gateway).expect("endpoint");
        let key = SigningKey::hmac("meridian-local", self.hmac_secret().into_bytes());
        let request = SignRequest {
            method: "PUT".into(),
            bucket: self.bucket_names()[0].clone(),
            object: Some(object.into()),
            expires_in: 60,
            timestamp: signed_at,
            headers: std::collections::BTreeMap::from([(
                "content-type".to_string(),
                content_type.to_string(),
            )]),
            query: Vec::new(),
            scheme,
            authority,
            style: UrlStyle::Path,
        };
        signing::sign_url(&key, &request).expect("sign").url
    }

    /// Every bucket of the stack (main first).
    pub fn bucket_names(&self) -> Vec<String> {
        self.stack
            .config()
            .regions
            .iter()
            .map(|r| r.bucket.clone())
            .collect()
    }

    /// The main bucket, opened on the stack's folder.
    pub async fn main_bucket(&self) -> meridian_shared::storage::LocalBucket {
        let root = &self.stack.config().storage.root;
        meridian_shared::storage::LocalBucket::open(root, &self.bucket_names()[0])
            .await
            .expect("open the main bucket")
    }

    /// Whether any bucket holds `name`.
    pub async fn buckets_holding(&self, name: &str) -> Vec<String> {
        let root = self.stack.config().storage.root.clone();
        let object = meridian_shared::ObjectName::new(name).expect("name");
        let mut holding = Vec::new();
        for bucket_name in self.bucket_names() {
            let bucket = meridian_shared::storage::LocalBucket::open(&root, &bucket_name)
                .await
                .expect("open");
            if meridian_shared::Bucket::head(&bucket, &object)
                .await
                .is_ok()
            {
                holding.push(bucket_name);
            }
        }
        holding
    }
}

/// Every path under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(all_files(&path));
        }
        found.push(path);
    }
    found
}
