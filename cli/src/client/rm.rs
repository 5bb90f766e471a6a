//! `meridian rm NAME`: delete an object through the delete function.

use meridian_shared::signing::encode_path;

use super::{Client, check};
use crate::error::Result;

/// Deletes `name` from the main bucket (regional copies and caches follow).
pub async fn rm(client: &Client, name: &str) -> Result<()> {
    let response = client
        .http
        .delete(format!(
            "{}/v1/objects/{}",
            client.info.delete,
            encode_path(name)
        ))
        .bearer_auth(&client.token)
        .send()
        .await?;
    check("delete", response).await?;
    Ok(())
}
