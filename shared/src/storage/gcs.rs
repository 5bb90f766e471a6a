//! The Google Cloud Storage backend, over the JSON API. The endpoint is explicit so
//! the same code talks to Cloud Storage and to fake-gcs-server.
//!
//! Credentials are Application Default Credentials: a service-account key file (named
//! in the config or by `GOOGLE_APPLICATION_CREDENTIALS`) or, on Cloud Run and Compute
//! Engine, the metadata server. Requests go without credentials only to an emulator
//! (see [`GoogleCredentials`](crate::config::GoogleCredentials)).
//!
//! Reads, deletes and listing go through `gcloud-storage`. Uploads are a streamed
//! `multipart/related` request built here: the crate's multipart upload sends the
//! media part without a Content-Type (which Cloud Storage emulators then drop), and
//! its simple upload cannot carry Cache-Control or custom metadata.

use std::time::SystemTime;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::Error as GcsError;
use gcloud_storage::http::buckets::insert::{
    BucketCreationConfig, InsertBucketParam, InsertBucketRequest,
};
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;

use std::sync::Arc;

use gcloud_storage::client::google_cloud_auth::token::DefaultTokenSourceProvider;
use token_source::{TokenSource, TokenSourceProvider};

use super::{ByteStream, ObjectMeta, ObjectName, PutOptions, content_type_or_default};
use crate::config::{GoogleCredentials, OutboundSettings, StorageConfig};
use crate::error::{Error, Result};
use crate::outbound;

/// A connection to a Cloud Storage endpoint.
#[derive(Clone)]
pub struct GcsClient {
    client: Client,
    /// For JSON calls made here rather than through gcloud-storage (rewrites).
    api_http: reqwest::Client,
    /// For uploads, which watch their own body for silence (see `outbound`).
    upload_http: reqwest::Client,
    /// Where uploads get their `Authorization` (the same source the client uses);
    /// `None` for an emulator.
    tokens: Option<Arc<dyn TokenSource>>,
    silence: std::time::Duration,
    endpoint: String,
}

impl std::fmt::Debug for GcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GcsClient({})", self.endpoint)
    }
}

impl GcsClient {
    /// A client for the endpoint and credentials `storage` configures. Every call is
    /// bounded by `limits`.
    pub async fn from_config(
        storage: &StorageConfig,
        limits: &OutboundSettings,
    ) -> Result<GcsClient> {
        let provider = match storage.effective_gcs_credentials() {
            GoogleCredentials::Anonymous => None,
            _ => Some(
                crate::gcp::token_provider(
                    storage.gcs_credentials_file.as_deref(),
                    &gcloud_storage::http::storage_client::SCOPES,
                    "storage.gcs_credentials_file",
                )
                .await?,
            ),
        };
        GcsClient::new(&storage.gcs_endpoint, limits, provider)
    }

    /// A client without credentials, for emulators such as fake-gcs-server. Every
    /// call is bounded by `limits`.
    pub async fn anonymous(endpoint: &str, limits: &OutboundSettings) -> Result<GcsClient> {
        GcsClient::new(endpoint, limits, None)
    }

    fn new(
        endpoint: &str,
        limits: &OutboundSettings,
        provider: Option<DefaultTokenSourceProvider>,
    ) -> Result<GcsClient> {
        crate::tls::install_crypto_provider();
        let client_error = |e| Error::Config(format!("storage.gcs_endpoint: HTTP client: {e}"));
        let http = outbound::client_builder(limits)
            .build()
            .map_err(client_error)?;
        let upload_http = outbound::upload_client_builder(limits)
            .build()
            .map_err(client_error)?;
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let tokens = provider.as_ref().map(|p| p.token_source());
        let config = ClientConfig {
            storage_endpoint: endpoint.clone(),
            http: Some(http.clone().into()),
            token_source_provider: provider.map(|p| Box::new(p) as Box<dyn TokenSourceProvider>),
            ..ClientConfig::default()
        };
        Ok(GcsClient {
            client: Client::new(config),
            api_http: http.clone(),
            upload_http,
            tokens,
            silence: limits.request_timeout(),
            endpoint,
        })
    }

    /// A handle on one bucket.
    pub fn bucket(&self, name: &str) -> GcsBucket {
        GcsBucket {
            client: self.clone(),
            name: name.to_string(),
        }
    }

    /// Creates a bucket; an existing bucket is fine.
    pub async fn create_bucket(&self, project: &str, name: &str) -> Result<()> {
        let request = InsertBucketRequest {
            name: name.to_string(),
            param: InsertBucketParam {
                project: project.to_string(),
                ..Default::default()
            },
            bucket: BucketCreationConfig::default(),
        };
        match self.client.insert_bucket(&request).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(409) => Ok(()),
            Err(e) => Err(Error::upstream(format!("create bucket {name}"), e)),
        }
    }
}

/// Characters left as they are in an object name inside a URL path (RFC 3986's
/// unreserved set); everything else, `/` included, is percent-encoded.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How many times a retryable failure of a rewrite call is tried again.
const REWRITE_RETRIES: u32 = 4;

/// The answer to one `rewriteTo` call.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RewriteAnswer {
    done: bool,
    rewrite_token: Option<String>,
    resource: Option<Object>,
}

/// A failed call, and whether it is worth another try (Cloud Storage's 408, 429 and
/// 5xx answers, timeouts and broken connections are; refusals are not).
struct CallFailure {
    error: Error,
    retryable: bool,
}

impl CallFailure {
    fn fatal(error: Error) -> CallFailure {
        CallFailure {
            error,
            retryable: false,
        }
    }
}

impl GcsBucket {
    /// A server-side copy (`rewriteTo`): no byte passes through this process. The
    /// destination precondition keeps an older generation from replacing a newer one;
    /// retryable failures are tried again with backoff and jitter.
    async fn rewrite_from(
        &self,
        source: &GcsBucket,
        name: &ObjectName,
        source_generation: i64,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        // Cloud Storage enforces ifGenerationMatch atomically; emulators may not, so
        // check it here too (as for deletes).
        if let Some(expected) = options.if_generation_match {
            let live = match super::Bucket::head(self, name).await {
                Ok(meta) => Some(meta.generation),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            super::check_generation(name, Some(expected), live)?;
        }
        let what = format!("cloud storage rewrite of {name} into {}", self.name);
        let object = percent_encoding::utf8_percent_encode(name.as_str(), PATH_SEGMENT);
        let url = format!(
            "{}/storage/v1/b/{}/o/{object}/rewriteTo/b/{}/o/{object}",
            self.client.endpoint, source.name, self.name
        );
        let body = serde_json::json!({
            "contentType": content_type_or_default(options.content_type),
            "cacheControl": options.cache_control,
            "metadata": options.metadata,
        });
        let mut rewrite_token: Option<String> = None;
        loop {
            let mut query = vec![("sourceGeneration", source_generation.to_string())];
            if let Some(generation) = options.if_generation_match {
                query.push(("ifGenerationMatch", generation.to_string()));
            }
            if let Some(token) = &rewrite_token {
                query.push(("rewriteToken", token.clone()));
            }
            let mut attempt = 0;
            let answer = loop {
                let request = self.client.api_http.post(&url).query(&query).json(&body);
                match self
                    .rewrite_call(request, name, source, source_generation, &what)
                    .await
                {
                    Err(failure) if failure.retryable && attempt < REWRITE_RETRIES => {
                        let backoff = std::time::Duration::from_millis(100 << attempt);
                        tracing::warn!(cause = %crate::error::Chain(&failure.error), attempt, "retrying a rewrite");
                        tokio::time::sleep(outbound::with_jitter(backoff)).await;
                        attempt += 1;
                    }
                    Err(failure) => return Err(failure.error),
                    Ok(answer) => break answer,
                }
            };
            if answer.done {
                let object = answer.resource.ok_or_else(|| {
                    Error::upstream_msg(format!("{what}: done, but no object in the answer"))
                })?;
                return Ok(to_meta(object));
            }
            rewrite_token = answer.rewrite_token;
            if rewrite_token.is_none() {
                return Err(Error::upstream_msg(format!(
                    "{what}: not done, and no token to go on with"
                )));
            }
        }
    }

    /// One `rewriteTo` call. A 404 is the source's generation being gone: a
    /// precondition failure when the object has another generation by now.
    async fn rewrite_call(
        &self,
        mut request: reqwest::RequestBuilder,
        name: &ObjectName,
        source: &GcsBucket,
        source_generation: i64,
        what: &str,
    ) -> Result<RewriteAnswer, CallFailure> {
        if let Some(tokens) = &self.client.tokens {
            let authorization = crate::gcp::authorization(tokens.as_ref(), what)
                .await
                .map_err(|error| CallFailure {
                    error,
                    retryable: true,
                })?;
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        let response = request.send().await.map_err(|e| CallFailure {
            retryable: e.is_timeout() || e.is_connect() || e.is_request(),
            error: Error::from_http(what.to_string(), e),
        })?;
        match response.status().as_u16() {
            200..=299 => response.json().await.map_err(|e| CallFailure {
                retryable: e.is_timeout(),
                error: Error::from_http(format!("{what}: reading the answer"), e),
            }),
            404 => Err(CallFailure::fatal(
                match super::Bucket::head(source, name).await {
                    Ok(live) => Error::PreconditionFailed(format!(
                        "{name}: the source holds generation {}, not {source_generation}",
                        live.generation
                    )),
                    Err(e) => e,
                },
            )),
            412 => Err(CallFailure::fatal(Error::PreconditionFailed(format!(
                "{name}: generation precondition failed"
            )))),
            code => Err(CallFailure {
                retryable: matches!(code, 408 | 429 | 500..=599),
                error: Error::upstream_msg(format!("{what}: {code}")),
            }),
        }
    }
}

/// One Cloud Storage bucket.
#[derive(Debug, Clone)]
pub struct GcsBucket {
    client: GcsClient,
    name: String,
}

/// Whether the client gave up waiting (connect or read timeout).
fn timed_out(e: &GcsError) -> bool {
    match e {
        GcsError::HttpClient(e) | GcsError::RawResponse(e, _) => e.is_timeout(),
        GcsError::HttpMiddleware(e) => e.chain().any(|cause| {
            cause
                .downcast_ref::<reqwest::Error>()
                .is_some_and(|e| e.is_timeout())
        }),
        _ => false,
    }
}

fn status(e: &GcsError) -> Option<u16> {
    match e {
        GcsError::Response(r) => Some(r.code),
        GcsError::HttpClient(e) | GcsError::RawResponse(e, _) => e.status().map(|s| s.as_u16()),
        _ => None,
    }
}

fn map_error(name: &str, e: GcsError) -> Error {
    match status(&e) {
        Some(404) => Error::NotFound(name.to_string()),
        Some(412) => Error::PreconditionFailed(format!("{name}: generation precondition failed")),
        _ if timed_out(&e) => Error::timeout(format!("cloud storage: {name}"), e),
        _ => Error::upstream(format!("cloud storage: {name}"), e),
    }
}

fn to_meta(object: Object) -> ObjectMeta {
    ObjectMeta {
        name: object.name,
        size: u64::try_from(object.size).unwrap_or(0),
        content_type: content_type_or_default(object.content_type.unwrap_or_default()),
        cache_control: object.cache_control.filter(|c| !c.is_empty()),
        md5_hash: object.md5_hash.unwrap_or_default(),
        crc32c: object.crc32c.unwrap_or_default(),
        generation: object.generation,
        updated: object
            .updated
            .map(SystemTime::from)
            .map(Into::into)
            .unwrap_or_else(chrono::Utc::now),
        metadata: object.metadata.unwrap_or_default().into_iter().collect(),
    }
}

#[async_trait::async_trait]
impl super::Bucket for GcsBucket {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(
        &self,
        name: &ObjectName,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let content_type = content_type_or_default(options.content_type);
        let boundary = format!("meridian-{}", uuid::Uuid::new_v4().simple());
        let metadata = serde_json::json!({
            "name": name.as_str(),
            "contentType": content_type,
            "cacheControl": options.cache_control,
            "metadata": options.metadata,
        });
        let head = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let stream = futures::stream::once(async move { Ok(Bytes::from(head)) })
            .chain(body)
            .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));
        let what = format!("cloud storage upload of {name}");
        let mut url = url::Url::parse(&format!(
            "{}/upload/storage/v1/b/{}/o",
            self.client.endpoint, self.name
        ))
        .map_err(|e| Error::Config(format!("storage.gcs_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("uploadType", "multipart")
            .append_pair("name", name.as_str());
        if let Some(generation) = options.if_generation_match {
            url.query_pairs_mut()
                .append_pair("ifGenerationMatch", &generation.to_string());
        }
        let mut request = self.client.upload_http.post(url).header(
            http::header::CONTENT_TYPE,
            format!("multipart/related; boundary={boundary}"),
        );
        if let Some(tokens) = &self.client.tokens {
            // Refreshed by the source when it nears expiry.
            let token = crate::gcp::authorization(tokens.as_ref(), &what).await?;
            request = request.header(http::header::AUTHORIZATION, token);
        }
        let response =
            outbound::send_streaming_upload(request, Box::pin(stream), self.client.silence, &what)
                .await?;
        // The upload client has no read timeout (see `outbound`): bound the answer here.
        let status = response.status().as_u16();
        let answer = tokio::time::timeout(self.client.silence, response.bytes())
            .await
            .map_err(|_| Error::Timeout {
                what: format!("{what}: reading the answer"),
                source: None,
            })?
            .map_err(|e| Error::from_http(format!("{what}: reading the answer"), e))?;
        match status {
            200..=299 => {}
            412 => {
                return Err(Error::PreconditionFailed(format!(
                    "{name}: generation precondition failed"
                )));
            }
            code => {
                let text = String::from_utf8_lossy(&answer[..answer.len().min(1024)]);
                return Err(Error::upstream_msg(format!("{what}: {code}: {text}")));
            }
        }
        let object: Object = serde_json::from_slice(&answer)
            .map_err(|e| Error::upstream(format!("{what}: reading the answer"), e))?;
        Ok(to_meta(object))
    }

    async fn get(&self, name: &ObjectName) -> Result<(ObjectMeta, ByteStream)> {
        let meta = self.head(name).await?;
        // Read exactly the generation we described, even if a newer one lands meanwhile.
        let request = GetObjectRequest {
            bucket: self.name.clone(),
            object: name.to_string(),
            generation: Some(meta.generation),
            ..Default::default()
        };
        let stream = self
            .client
            .client
            .download_streamed_object(&request, &Range::default())
            .await
            .map_err(|e| map_error(name.as_str(), e))?
            .map_err(std::io::Error::other);
        Ok((meta, Box::pin(stream)))
    }

    async fn head(&self, name: &ObjectName) -> Result<ObjectMeta> {
        let request = GetObjectRequest {
            bucket: self.name.clone(),
            object: name.to_string(),
            ..Default::default()
        };
        let object = self
            .client
            .client
            .get_object(&request)
            .await
            .map_err(|e| map_error(name.as_str(), e))?;
        Ok(to_meta(object))
    }

    async fn delete(&self, name: &ObjectName, if_generation_match: Option<i64>) -> Result<()> {
        // Cloud Storage enforces ifGenerationMatch atomically; fake-gcs-server ignores
        // it on deletes (v1.54), so check it here too. Against real Cloud Storage this
        // only turns a lost race into the same 412 a little earlier.
        if let Some(expected) = if_generation_match {
            let live = self.head(name).await?;
            super::check_generation(name, Some(expected), Some(live.generation))?;
        }
        let request = DeleteObjectRequest {
            bucket: self.name.clone(),
            object: name.to_string(),
            if_generation_match,
            ..Default::default()
        };
        self.client
            .client
            .delete_object(&request)
            .await
            .map_err(|e| map_error(name.as_str(), e))
    }

    async fn copy_from(
        &self,
        source: &dyn super::Bucket,
        name: &ObjectName,
        source_generation: i64,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        match source.as_gcs() {
            Some(source) if source.client.endpoint == self.client.endpoint => {
                self.rewrite_from(source, name, source_generation, options)
                    .await
            }
            _ => super::copy_by_streaming(self, source, name, source_generation, options).await,
        }
    }

    fn as_gcs(&self) -> Option<&GcsBucket> {
        Some(self)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut found = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let page = self.list_page(prefix, page_token.as_deref()).await?;
            found.extend(page.objects);
            match page.next_page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    async fn list_page(&self, prefix: &str, page_token: Option<&str>) -> Result<super::ListPage> {
        let request = ListObjectsRequest {
            bucket: self.name.clone(),
            prefix: Some(prefix.to_string()),
            page_token: page_token.map(str::to_string),
            ..Default::default()
        };
        let page = self
            .client
            .client
            .list_objects(&request)
            .await
            .map_err(|e| map_error(prefix, e))?;
        Ok(super::ListPage {
            objects: page
                .items
                .unwrap_or_default()
                .into_iter()
                .map(to_meta)
                .collect(),
            next_page_token: page.next_page_token.filter(|t| !t.is_empty()),
        })
    }
}
