//! Object names, validated once at the edge of the system so that everything inside
//! can trust them.

use std::fmt;

use crate::error::{Error, Result};

/// A valid object name: UTF-8, 1–1024 bytes, no NUL, CR or LF (Cloud Storage's
/// rules), and no `.` or `..` path segment, so a name can never climb out of a folder
/// or be rewritten by URL normalisation on its way to an edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName(String);

/// Paths an edge answers itself, so no object may be named like them.
const RESERVED_BY_EDGES: [&str; 2] = ["healthz", "metrics"];

/// Prefix of an edge's administrative endpoints (purge).
pub const EDGE_ADMIN_PREFIX: &str = "_meridian/";

/// The longest name Cloud Storage accepts, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

impl ObjectName {
    /// Validates `name`; the error says which rule it broke.
    pub fn new(name: impl Into<String>) -> Result<ObjectName> {
        let name = name.into();
        check(&name)?;
        Ok(ObjectName(name))
    }

    /// The name in a URL path after its leading `/`, as sent (percent-encoded): decoded,
    /// then validated like [`ObjectName::new`].
    pub fn from_path(path: &str) -> Result<ObjectName> {
        Ok(ObjectName(ObjectName::read_path(path)?.into_owned()))
    }

    /// The same name as [`ObjectName::from_path`], for a caller that only reads it:
    /// borrowed from `path` when nothing needed decoding (most names), so a request
    /// for an object costs no copy of its name.
    pub fn read_path(path: &str) -> Result<std::borrow::Cow<'_, str>> {
        let encoded = path.strip_prefix('/').unwrap_or(path);
        let name = if encoded.contains('%') {
            percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .map_err(|_| Error::InvalidName("object name is not UTF-8".into()))?
        } else {
            std::borrow::Cow::Borrowed(encoded)
        };
        check(&name)?;
        Ok(name)
    }

    /// Refuses names an edge could not serve because its own endpoints use that path
    /// (`healthz`, `metrics`, anything under `_meridian/`).
    pub fn check_servable(&self) -> Result<()> {
        if RESERVED_BY_EDGES.contains(&self.0.as_str()) || self.0.starts_with(EDGE_ADMIN_PREFIX) {
            return Err(Error::InvalidName(format!(
                "{:?} is reserved for edge endpoints (healthz, metrics, {EDGE_ADMIN_PREFIX}*)",
                truncate(&self.0)
            )));
        }
        Ok(())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `name` follows [`ObjectName`]'s rules; the error says which one it broke.
fn check(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidName("name must not be empty".into()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::InvalidName(format!(
            "name is {} bytes; the limit is {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    // Bytes, not chars: these three are ASCII, and never part of a longer character.
    if let Some(&b) = name
        .as_bytes()
        .iter()
        .find(|b| matches!(b, 0 | b'\r' | b'\n'))
    {
        return Err(Error::InvalidName(format!(
            "name must not contain {:?}",
            char::from(b).escape_default().to_string()
        )));
    }
    if name
        .as_bytes()
        .split(|&b| b == b'/')
        .any(|segment| segment == b"." || segment == b"..")
    {
        return Err(Error::InvalidName(format!(
            "{:?} has a '.' or '..' segment",
            truncate(name)
        )));
    }
    Ok(())
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Keeps error messages short when a name is long.
fn truncate(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "a",
            "folder/Test.cs",
            "ünïcødé/名前.txt",
            "a b+c",
            "x".repeat(1024).as_str(),
        ] {
            assert!(ObjectName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_in_paths_are_decoded_then_checked() {
        let name = |path| ObjectName::from_path(path).map(|n| n.as_str().to_string());
        assert_eq!(name("/media/a%20b.bin").expect("valid"), "media/a b.bin");
        assert_eq!(name("/%E5%90%8D.txt").expect("valid"), "名.txt");
        for refused in [
            "/",
            "",
            "/..%2Fescape",
            "/a%00b",
            "/%FF",
            "/a/./b",
            "/a/..",
            "/a\nb",
        ] {
            assert!(
                matches!(ObjectName::from_path(refused), Err(Error::InvalidName(_))),
                "{refused:?}"
            );
            assert!(ObjectName::read_path(refused).is_err(), "{refused:?}");
        }
        // Read in place when there is nothing to decode, decoded otherwise.
        let plain = ObjectName::read_path("/media/a.bin").expect("valid");
        assert!(matches!(plain, std::borrow::Cow::Borrowed("media/a.bin")));
        let decoded = ObjectName::read_path("/a%20b").expect("valid");
        assert!(matches!(decoded, std::borrow::Cow::Owned(ref n) if n == "a b"));
    }

    #[test]
    fn edge_endpoints_are_not_servable_names() {
        for reserved in ["healthz", "metrics", "_meridian/purge"] {
            assert!(
                ObjectName::new(reserved)
                    .expect("valid")
                    .check_servable()
                    .is_err(),
                "{reserved}"
            );
        }
        assert!(
            ObjectName::new("healthz.txt")
                .expect("valid")
                .check_servable()
                .is_ok()
        );
    }

    #[test]
    fn rejects_names_that_break_the_rules() {
        let long = "x".repeat(1025);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../../b",
            "a/./b",
            "a\0b",
            "a\rb",
            "a\nb",
            long.as_str(),
        ] {
            let err = ObjectName::new(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidName(_)), "{bad}: {err}");
        }
    }
}
