//! Reading small JSON request bodies. Handlers that need a token check it from the
//! headers first and only then read the body with this, so an unauthenticated client
//! cannot make a server buffer anything.

use axum::body::{Body, Bytes};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::{BodyFailure, Error, Result};

/// Reads `body` whole, refusing more than `limit` bytes with [`Error::BodyTooLarge`].
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Error::BodyTooLarge { limit }),
        Err(e) => Err(Error::Body(BodyFailure::Incomplete(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let small = read_limited(Body::from("{}"), 16).await.expect("fits");
        assert_eq!(small.as_ref(), b"{}");
        let large = read_limited(Body::from(vec![b'x'; 17]), 16).await;
        assert!(
            matches!(large, Err(Error::BodyTooLarge { limit: 16 })),
            "{large:?}"
        );
    }
}
