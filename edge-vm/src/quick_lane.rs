//! The edge's quick lane (see `meridian_shared::server::QuickLane`): plain `GET`s of
//! objects that are fresh plain hits in memory, answered with their kept head and
//! counted as [`crate::serve`] counts every answer. Anything else (the edge's own
//! paths, a request with a field the cache acts on, a name that is not valid, a miss)
//! goes to the edge's service.

use std::borrow::Cow;

use axum::http::{HeaderValue, Method, StatusCode};
use meridian_shared::ObjectName;
use meridian_shared::server::{QuickAnswer, QuickLane, QuickRequest};
use tokio::time::Instant;

use crate::cache_status::CacheStatus;
use crate::request_fields::RequestFields;
use crate::{EdgeState, OWN_PATHS, OriginKind};

/// The edge's quick lane.
#[derive(Clone)]
pub struct EdgeQuickLane {
    state: EdgeState,
}

impl EdgeQuickLane {
    /// The lane for `state`.
    pub(crate) fn new(state: EdgeState) -> EdgeQuickLane {
        EdgeQuickLane { state }
    }

    /// The store key `request` asks for, as the service would read it: the object's
    /// name in front of the bucket, the target in front of an HTTP origin.
    fn key<'a>(&self, request: &'a QuickRequest<'a>) -> Option<Cow<'a, str>> {
        match self.state.0.origin {
            OriginKind::Bucket => ObjectName::read_path(request.path()).ok(),
            OriginKind::Http => Some(Cow::Borrowed(request.target())),
        }
    }
}

const HIT: HeaderValue = HeaderValue::from_static(CacheStatus::Hit.as_str());

impl QuickLane for EdgeQuickLane {
    async fn answer<'a>(&'a self, request: &'a QuickRequest<'a>) -> Option<QuickAnswer> {
        let started = Instant::now();
        let path = request.path();
        if OWN_PATHS.contains(&path)
            || RequestFields::of_names(request.field_names()) != RequestFields::default()
        {
            return None;
        }
        let key = self.key(request)?;
        let answer = self.state.front().quick_hit(&key).await?;
        self.state.metrics().answered(
            &Method::GET,
            path,
            StatusCode::OK,
            Some(&HIT),
            Some(answer.body.len() as u64),
            started,
        );
        self.state.metrics().answered_quickly();
        Some(answer)
    }
}
