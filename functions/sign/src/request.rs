//! The body of `POST /v1/uploads`, validated: a servable object name and a
//! well-formed content type.

use meridian_shared::{Error, ObjectName, Result};
use serde::Deserialize;

/// A validated upload request.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRequest {
    /// Where the object will live.
    pub name: ObjectName,
    /// The Content-Type the upload must carry.
    pub content_type: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUploadRequest {
    name: String,
    content_type: String,
}

impl UploadRequest {
    /// Parses and validates a JSON body; errors say which field is wrong.
    pub fn parse(body: &[u8]) -> Result<UploadRequest> {
        let raw: RawUploadRequest = serde_json::from_slice(body).map_err(|e| {
            Error::BadRequest(format!("body must be JSON {{name, content_type}}: {e}"))
        })?;
        let name = ObjectName::new(raw.name)?;
        name.check_servable()?;
        validate_content_type(&raw.content_type)?;
        Ok(UploadRequest {
            name,
            content_type: raw.content_type,
        })
    }
}

/// `type/subtype[; params]` in visible ASCII, at most 255 bytes.
fn validate_content_type(value: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::BadRequest(format!("content_type: {why}")));
    if value.is_empty() || value.len() > 255 {
        return bad("must be 1 to 255 characters");
    }
    if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return bad("must be printable ASCII");
    }
    let essence = value.split(';').next().unwrap_or_default().trim();
    match essence.split_once('/') {
        Some((kind, sub)) if !kind.is_empty() && !sub.is_empty() && !sub.contains('/') => Ok(()),
        _ => bad("must look like type/subtype, e.g. text/plain"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, content_type: &str) -> Result<UploadRequest> {
        UploadRequest::parse(
            serde_json::json!({"name": name, "content_type": content_type})
                .to_string()
                .as_bytes(),
        )
    }

    #[test]
    fn accepts_a_plain_request() {
        let request = parse("img/cat.png", "image/png").expect("valid");
        assert_eq!(request.name.as_str(), "img/cat.png");
    }

    #[test]
    fn rejects_bad_fields_with_their_name() {
        assert!(
            parse("a", "png")
                .expect_err("bad type")
                .to_string()
                .contains("content_type")
        );
        assert!(parse("a", "text/plain\r\nx: y").is_err());
        assert!(
            parse("../x", "text/plain")
                .expect_err("bad name")
                .to_string()
                .contains("name")
        );
        assert!(
            parse("healthz", "text/plain")
                .expect_err("reserved")
                .to_string()
                .contains("reserved")
        );
        assert!(
            UploadRequest::parse(b"{\"name\": 1}")
                .expect_err("bad json")
                .to_string()
                .contains("JSON")
        );
    }
}
