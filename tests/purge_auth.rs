//! Purges need the replicator's own credential: an edge accepts only EdDSA tokens
//! signed by the replicator's key, for the edge audience, with the `purge` scope. A
//! publisher's token (even one claiming `purge`), a token for another audience and a
//! token from another key are all refused, over real HTTPS.

use meridian_shared::api::{PURGE_PATH, PurgeRequest};
use meridian_shared::auth::{self, PurgeSigningKey, TokenScope};

use crate::harness::stack::TestStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_take_purges_only_with_the_replicators_credential() {
    let stack = TestStack::start().await;
    let edge = format!("{}{PURGE_PATH}", stack.stack.info().edges[0].url);
    let body = PurgeRequest {
        name: "anything.txt".into(),
        older_than: None,
    };
    let purge_with = |token: String| {
        let request = stack.http.post(&edge).bearer_auth(token).json(&body);
        async move { request.send().await.expect("edge answers") }
    };
    let key = PurgeSigningKey::from_base64(&stack.secrets().purge_key).expect("the stack's key");

    let genuine = purge_with(key.mint("replicate", auth::unix_now()).expect("mint")).await;
    assert_eq!(genuine.status(), 204);

    let publisher = auth::mint(
        stack.secrets().jwt.as_bytes(),
        "publisher",
        &[TokenScope::Publish, TokenScope::Purge],
        auth::unix_now(),
        std::time::Duration::from_secs(60),
    )
    .expect("mint");
    let refused = purge_with(publisher).await;
    assert_eq!(refused.status(), 401);
    assert!(
        refused
            .text()
            .await
            .expect("body")
            .contains("not of the kind")
    );

    let other_audience = {
        let claims = auth::Claims {
            sub: "replicate".into(),
            scope: "purge".into(),
            iat: auth::unix_now(),
            exp: auth::unix_now() + 60,
            nbf: None,
            aud: Some("meridian-boot".into()),
        };
        key.sign_claims(&claims).expect("sign")
    };
    let refused = purge_with(other_audience).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.expect("body").contains("audience"));

    let stranger = PurgeSigningKey::generate().expect("key");
    let refused = purge_with(stranger.mint("replicate", auth::unix_now()).expect("mint")).await;
    assert_eq!(refused.status(), 401);
    stack.stack.stop().await;
}
