//! The head of a stored response's plainest answer, kept for the second it holds.
//!
//! Most requests are hits on a fresh copy in memory, with no conditional and no range.
//! Their answer's fields are the stored ones plus `X-Cache`, `Cache-Status`, `Age` and
//! `Accept-Ranges`, and of those only `Age` and the `ttl` in `Cache-Status` change, once
//! a second. Adding the four to a copy of the stored fields cost more than a tenth of
//! such a hit (a table grown, four fields hashed and inserted, two values formatted and
//! allocated); a kept head is copied whole instead, and rebuilt when the second turns.
//! It is kept encoded too, for the server's quick lane, which writes it as it is.
//!
//! The head lives with the stored response's metadata, so it goes with it: a
//! revalidated or replaced copy starts without one. Copies of the metadata never carry
//! it over (see `Clone`), since their fields may differ.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::http::{HeaderMap, StatusCode};
use meridian_shared::server::EncodedHead;

/// An answer head for hits of one age.
pub struct Head {
    /// The stored response's age, in whole seconds, that the head is for.
    age: u64,
    /// Its fields.
    pub headers: HeaderMap,
    /// Its status line and fields as the quick lane writes them (see
    /// `meridian_shared::server::encode_head`).
    pub encoded: EncodedHead,
}

/// The kept head of a stored response's plain hits, if any.
#[derive(Default)]
pub struct KeptHead(ArcSwapOption<Head>);

impl KeptHead {
    /// What `read` takes from the head for a hit `age` seconds old: the kept one when
    /// it is for that age, else one with the fields `build` makes, which is kept in its
    /// place.
    pub fn for_age<R>(
        &self,
        age: u64,
        build: impl FnOnce() -> HeaderMap,
        read: impl FnOnce(&Head) -> R,
    ) -> R {
        if let Some(head) = &*self.0.load()
            && head.age == age
        {
            return read(head);
        }
        let headers = build();
        let encoded = meridian_shared::server::encode_head(StatusCode::OK, &headers);
        let head = Arc::new(Head {
            age,
            headers,
            encoded,
        });
        let answer = read(&head);
        self.0.store(Some(head));
        answer
    }
}

impl Clone for KeptHead {
    /// An empty one: a copy of the metadata may have other fields.
    fn clone(&self) -> Self {
        KeptHead::default()
    }
}

impl std::fmt::Debug for KeptHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let age = self.0.load().as_ref().map(|head| head.age);
        f.debug_struct("KeptHead").field("age", &age).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn head(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("age", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn builds_once_per_age_and_never_carries_over_to_a_copy() {
        let kept = KeptHead::default();
        let mut builds = 0;
        let mut ask = |age, value| {
            kept.for_age(
                age,
                || {
                    builds += 1;
                    head(value)
                },
                |head| head.headers.clone(),
            )
        };
        assert_eq!(ask(3, "3"), head("3"));
        assert_eq!(ask(3, "ignored"), head("3"), "kept for the same age");
        assert_eq!(ask(4, "4"), head("4"), "rebuilt when the age turns");
        assert_eq!(builds, 2);

        let copy = kept.clone();
        let copied = copy.for_age(4, || head("copy"), |head| head.headers.clone());
        assert_eq!(copied, head("copy"));
    }

    #[test]
    fn keeps_the_head_encoded_for_the_quick_lane() {
        let kept = KeptHead::default();
        let encoded = kept.for_age(7, || head("7"), |head| head.encoded.clone());
        assert_eq!(encoded.as_bytes(), b"HTTP/1.1 200 OK\r\nage: 7\r\n");
    }
}
