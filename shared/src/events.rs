//! Cloud Storage events as Google delivers them: the CloudEvent types and the
//! `StorageObjectData` payload, plus the binary-mode headers the local gateway sends.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::storage::ObjectMeta;

/// The kinds of storage event Meridian acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageEventKind {
    /// A new generation of an object was written.
    Finalized,
    /// A generation of an object was deleted (or overwritten).
    Deleted,
}

impl StorageEventKind {
    /// The CloudEvent `type`.
    pub fn as_str(&self) -> &'static str {
        match self {
            StorageEventKind::Finalized => "google.cloud.storage.object.v1.finalized",
            StorageEventKind::Deleted => "google.cloud.storage.object.v1.deleted",
        }
    }

    /// Parses a CloudEvent `type`; other types are not storage object changes.
    pub fn from_type(ty: &str) -> Option<StorageEventKind> {
        [StorageEventKind::Finalized, StorageEventKind::Deleted]
            .into_iter()
            .find(|k| k.as_str() == ty)
    }
}

/// The body of a storage CloudEvent (`google.events.cloud.storage.v1.StorageObjectData`).
/// 64-bit integers arrive as JSON strings from Google and as numbers in some samples:
/// both are accepted; they are written as strings, as Google does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageObjectData {
    /// Bucket holding the object.
    pub bucket: String,
    /// Object name.
    pub name: String,
    /// The generation the event is about.
    #[serde(with = "int64")]
    pub generation: i64,
    /// Metadata generation.
    #[serde(default, with = "int64")]
    pub metageneration: i64,
    /// Size in bytes.
    #[serde(default, with = "int64")]
    pub size: i64,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Cache-Control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// Base64 MD5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_hash: Option<String>,
    /// `bucket/name/generation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Always `storage#object`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Creation time of this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<DateTime<Utc>>,
    /// Last update time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<DateTime<Utc>>,
    /// Custom metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl StorageObjectData {
    /// The event body describing `meta` in `bucket`.
    pub fn from_meta(bucket: &str, meta: &ObjectMeta) -> StorageObjectData {
        StorageObjectData {
            bucket: bucket.to_string(),
            name: meta.name.clone(),
            generation: meta.generation,
            metageneration: 1,
            size: meta.size as i64,
            content_type: Some(meta.content_type.clone()),
            cache_control: meta.cache_control.clone(),
            md5_hash: Some(meta.md5_hash.clone()),
            id: Some(format!("{bucket}/{}/{}", meta.name, meta.generation)),
            kind: Some("storage#object".to_string()),
            time_created: Some(meta.updated),
            updated: Some(meta.updated),
            metadata: meta.metadata.clone(),
        }
    }
}

/// Characters a CloudEvents HTTP header value must percent-encode (non-printable
/// ASCII, space, `"` and `%`; non-ASCII is always encoded).
const CE_HEADER: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// The headers of a binary-mode CloudEvent for `data`, as Eventarc sends them.
pub fn binary_mode_headers(
    kind: StorageEventKind,
    data: &StorageObjectData,
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", uuid::Uuid::new_v4().to_string()),
        ("ce-type", kind.as_str().to_string()),
        (
            "ce-source",
            format!(
                "//storage.googleapis.com/projects/_/buckets/{}",
                data.bucket
            ),
        ),
        (
            "ce-subject",
            format!("objects/{}", utf8_percent_encode(&data.name, CE_HEADER)),
        ),
        (
            "ce-time",
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
    ]
}

mod int64 {
    //! An i64 that arrives as a JSON string or number and leaves as a string.
    use super::*;

    pub fn serialize<S: Serializer>(value: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum StringOrNumber {
            String(String),
            Number(i64),
        }
        match StringOrNumber::deserialize(d)? {
            StringOrNumber::Number(n) => Ok(n),
            StringOrNumber::String(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_64_bit_fields_as_strings_or_numbers() {
        let as_strings: StorageObjectData = serde_json::from_str(
            r#"{"bucket":"b","name":"n","generation":"1587627537231057","size":"352"}"#,
        )
        .expect("strings");
        let as_numbers: StorageObjectData = serde_json::from_str(
            r#"{"bucket":"b","name":"n","generation":1587627537231057,"size":352}"#,
        )
        .expect("numbers");
        assert_eq!(as_strings, as_numbers);
        assert_eq!(as_strings.generation, 1_587_627_537_231_057);
        let json = serde_json::to_value(&as_strings).expect("serialize");
        assert_eq!(json["generation"], "1587627537231057");
    }

    #[test]
    fn event_types_round_trip() {
        for kind in [StorageEventKind::Finalized, StorageEventKind::Deleted] {
            assert_eq!(StorageEventKind::from_type(kind.as_str()), Some(kind));
        }
        assert_eq!(
            StorageEventKind::from_type("google.cloud.storage.object.v1.archived"),
            None
        );
    }

    #[test]
    fn subject_is_header_safe() {
        let data = StorageObjectData::from_meta(
            "b",
            &ObjectMeta {
                name: "dir/naïve file\".txt".into(),
                size: 0,
                content_type: "text/plain".into(),
                cache_control: None,
                md5_hash: String::new(),
                crc32c: String::new(),
                generation: 1,
                updated: Utc::now(),
                metadata: BTreeMap::new(),
            },
        );
        let headers = binary_mode_headers(StorageEventKind::Finalized, &data);
        let subject = &headers
            .iter()
            .find(|(k, _)| *k == "ce-subject")
            .expect("subject")
            .1;
        assert_eq!(subject, "objects/dir/na%C3%AFve%20file%22.txt");
    }
}
