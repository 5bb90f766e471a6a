//! Request metrics for the functions (boot, sign, delete, replicate), served in the
//! Prometheus text format (OpenMetrics flavour) at `GET /metrics`:
//! `meridian_requests_total{service, route, status}` and the histogram
//! `meridian_request_duration_seconds{service, route}`. Routes are the router's path
//! templates (`/v1/objects/{*name}`), never the paths clients typed, so the number of
//! series stays bounded; requests no route matched count as `unmatched`.
//!
//! Each instrumented router has a registry of its own (the local stack runs every
//! function in one process). The edge has richer metrics of its own.

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Where the functions serve their metrics.
pub const METRICS_PATH: &str = "/metrics";

/// The media type of the metrics text (Prometheus reads it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: &'static str,
    route: String,
    status: u16,
}

/// Labels of a duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    service: &'static str,
    route: String,
}

/// One service's request metrics.
struct ServiceMetrics {
    service: &'static str,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
}

impl ServiceMetrics {
    fn new(service: &'static str) -> ServiceMetrics {
        let mut registry = Registry::with_prefix("meridian");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        // 1 ms to about 16 s.
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 15))) as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's head to its response's head, by route",
            durations.clone(),
        );
        ServiceMetrics {
            service,
            registry,
            requests,
            durations,
        }
    }

    fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// `router` with `GET /metrics` and every request counted and timed, as `service`.
pub fn instrument(router: Router, service: &'static str) -> Router {
    let metrics = Arc::new(ServiceMetrics::new(service));
    let scraped = metrics.clone();
    router
        .route(
            METRICS_PATH,
            get(move || {
                let text = scraped.render();
                async move { ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response() }
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let metrics = metrics.clone();
                async move { observe(&metrics, request, next).await }
            },
        ))
}

async fn observe(metrics: &ServiceMetrics, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    metrics
        .durations
        .get_or_create(&RouteLabels {
            service: metrics.service,
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            service: metrics.service,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn fetch(router: &Router, path: &str) -> (u16, String) {
        let response = router
            .clone()
            .oneshot(
                http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status() {
        let router = instrument(
            Router::new().route("/v1/things/{*name}", get(|| async { "thing" })),
            "test",
        );
        for path in ["/v1/things/a", "/v1/things/b/c", "/nowhere"] {
            fetch(&router, path).await;
        }
        let (status, text) = fetch(&router, METRICS_PATH).await;
        assert_eq!(status, 200);
        for line in [
            r#"meridian_requests_total{service="test",route="/v1/things/{*name}",status="200"} 2"#,
            r#"meridian_requests_total{service="test",route="unmatched",status="404"} 1"#,
            r#"meridian_request_duration_seconds_count{service="test",route="/v1/things/{*name}"} 2"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }
}
