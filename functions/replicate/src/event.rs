//! Reading a CloudEvent into a storage change, refusing (400) what can never apply.

use cloudevents::{AttributesReader, Data, Event};
use meridian_shared::events::{StorageEventKind, StorageObjectData};
use meridian_shared::{Error, ObjectName, Result};

/// A change to one object of the main bucket.
#[derive(Debug, Clone)]
pub struct StorageChange {
    /// The CloudEvent id (for logs).
    pub event_id: String,
    /// Finalized or deleted.
    pub kind: StorageEventKind,
    /// The object, validated.
    pub name: ObjectName,
    /// The event body.
    pub data: StorageObjectData,
}

impl StorageChange {
    /// Reads `event`; errors are [`Error::BadRequest`] saying what is wrong.
    pub fn from_event(event: &Event) -> Result<StorageChange> {
        let kind = StorageEventKind::from_type(event.ty())
            .ok_or_else(|| Error::BadRequest(format!("unsupported event type {:?}", event.ty())))?;
        let data: StorageObjectData = match event.data() {
            Some(Data::Binary(bytes)) => serde_json::from_slice(bytes),
            Some(Data::String(text)) => serde_json::from_str(text),
            Some(Data::Json(value)) => serde_json::from_value(value.clone()),
            None => return Err(Error::BadRequest("event has no data".into())),
        }
        .map_err(|e| Error::BadRequest(format!("event data is not StorageObjectData: {e}")))?;
        let name = ObjectName::new(data.name.clone())?;
        Ok(StorageChange {
            event_id: event.id().to_string(),
            kind,
            name,
            data,
        })
    }
}
