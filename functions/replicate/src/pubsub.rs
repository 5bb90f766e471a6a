//! Cloud Storage notifications delivered by Pub/Sub, pushed (`POST /pubsub`: an
//! envelope `{"message": {"attributes", "data", "messageId"}, "subscription"}`, data in
//! base64) or pulled (`pull`: the message itself). The attributes name the event
//! (`eventType`, `bucketId`, `objectId`, `objectGeneration`); the data, with
//! `payloadFormat` `JSON_API_V1`, is the object resource. Read into the same
//! [`StorageChange`] as an Eventarc CloudEvent, so every door leads to one core.

use std::collections::BTreeMap;

use base64::Engine;
use meridian_shared::events::{StorageEventKind, StorageObjectData};
use meridian_shared::{Error, ObjectName, Result};
use serde::Deserialize;

use crate::StorageChange;

#[derive(Deserialize)]
struct PushEnvelope {
    message: PushMessage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    message_id: Option<String>,
}

/// What a notification asks for.
#[derive(Debug)]
pub enum Notification {
    /// A change to replicate.
    Change(Box<StorageChange>),
    /// An event that changes no content (`OBJECT_METADATA_UPDATE`): acknowledged,
    /// nothing to do.
    Ignored(String),
}

impl Notification {
    /// Reads a push envelope; [`Error::BadRequest`] says what is wrong with it.
    pub fn from_push(body: &[u8]) -> Result<Notification> {
        let envelope: PushEnvelope = serde_json::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("not a Pub/Sub push envelope: {e}")))?;
        let message = envelope.message;
        let data = match &message.data {
            Some(data) => base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| Error::BadRequest(format!("message data is not base64: {e}")))?,
            None => Vec::new(),
        };
        Notification::from_message(
            &message.attributes,
            &data,
            message.message_id.as_deref().unwrap_or("pubsub"),
        )
    }

    /// Reads a message's attributes and data (raw bytes, as pulled).
    pub fn from_message<'a, A>(attributes: A, data: &[u8], message_id: &str) -> Result<Notification>
    where
        A: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let attributes: BTreeMap<&str, &str> = attributes
            .into_iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let attribute = |name: &str| {
            attributes
                .get(name)
                .map(|v| v.to_string())
                .ok_or_else(|| Error::BadRequest(format!("notification has no {name} attribute")))
        };
        let event_type = attribute("eventType")?;
        let kind = match event_type.as_str() {
            "OBJECT_FINALIZE" => StorageEventKind::Finalized,
            // A live generation deleted, or (in a versioned bucket) made noncurrent:
            // either way it is no longer what regions should serve.
            "OBJECT_DELETE" | "OBJECT_ARCHIVE" => StorageEventKind::Deleted,
            "OBJECT_METADATA_UPDATE" => return Ok(Notification::Ignored(event_type)),
            other => {
                return Err(Error::BadRequest(format!(
                    "unsupported notification eventType {other:?}"
                )));
            }
        };
        let data = match attributes.get("payloadFormat") {
            Some(&"JSON_API_V1") if !data.is_empty() => {
                serde_json::from_slice::<StorageObjectData>(data).map_err(|e| {
                    Error::BadRequest(format!("message data is not a storage object: {e}"))
                })?
            }
            // payloadFormat NONE: everything needed is in the attributes.
            _ => {
                let generation = attribute("objectGeneration")?;
                serde_json::from_value(serde_json::json!({
                    "bucket": attribute("bucketId")?,
                    "name": attribute("objectId")?,
                    "generation": generation,
                }))
                .map_err(|e| Error::BadRequest(format!("notification attributes: {e}")))?
            }
        };
        let name = ObjectName::new(data.name.clone())?;
        Ok(Notification::Change(Box::new(StorageChange {
            event_id: message_id.to_string(),
            kind,
            name,
            data,
        })))
    }
}
