//! Secondary cache keys (RFC 9111 §4.1). A response with `Vary` is stored once per
//! combination of the named request fields: under its URI's key plus those fields'
//! values. The index remembers, per URI, which fields its responses vary on (from the
//! latest response) and which variant keys exist, so a lookup finds the right variant
//! and a purge of the URI drops them all. Origins that never send `Vary` (the bucket)
//! never touch the index beyond one atomic load.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderName, header};

/// The fields a response varies on, lowercased, in its order; `None` without `Vary`.
pub fn fields(response: &HeaderMap) -> Option<Arc<[HeaderName]>> {
    let names = crate::hop::field_names(response, &header::VARY);
    (!names.is_empty()).then(|| names.into())
}

/// The key of the variant `request` selects among responses to `key` varying on
/// `fields`: the key, then each field's values, whitespace after commas normalised.
pub fn variant_key(key: &str, fields: &[HeaderName], request: &HeaderMap) -> String {
    let mut variant = String::with_capacity(key.len() + 32);
    variant.push_str(key);
    for field in fields {
        variant.push('\0');
        variant.push_str(field.as_str());
        variant.push('=');
        let values = request
            .get_all(field)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .flat_map(|v| {
                v.split(',')
                    .map(|part| part.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join(",");
        variant.push_str(&values);
    }
    variant
}

/// What the index knows of one URI's variants.
struct Variants {
    fields: Arc<[HeaderName]>,
    keys: HashSet<String>,
}

/// Per URI key, the fields its responses vary on and the variant keys stored.
pub struct VaryIndex {
    /// Whether any response ever varied: while not, lookups skip the index.
    used: AtomicBool,
    entries: moka::sync::Cache<String, Arc<Mutex<Variants>>>,
}

/// How many URIs the index remembers variants of (least recently used ones go; their
/// variants then miss until a response names its fields again).
const INDEXED_URIS: u64 = 100_000;

impl VaryIndex {
    /// An empty index.
    pub fn new() -> VaryIndex {
        VaryIndex {
            used: AtomicBool::new(false),
            entries: moka::sync::Cache::new(INDEXED_URIS),
        }
    }

    /// Whether responses to `key` vary (so a request's store key depends on its fields).
    pub fn varies(&self, key: &str) -> bool {
        self.used.load(Ordering::Relaxed) && self.entries.contains_key(key)
    }

    /// The store key for `request` to `key`: its variant's key when responses to `key`
    /// vary, else `key` itself.
    pub fn store_key(&self, key: &str, request: &HeaderMap) -> Option<String> {
        if !self.used.load(Ordering::Relaxed) {
            return None;
        }
        let entry = self.entries.get(key)?;
        let fields = lock(&entry).fields.clone();
        Some(variant_key(key, &fields, request))
    }

    /// Records that responses to `key` vary on `fields` and one is stored under
    /// `variant`. Returns the variant keys made obsolete by a change of fields (to be
    /// dropped from the store).
    pub fn record(&self, key: &str, fields: &Arc<[HeaderName]>, variant: &str) -> Vec<String> {
        self.used.store(true, Ordering::Relaxed);
        let entry = self.entries.get_with(key.to_string(), || {
            Arc::new(Mutex::new(Variants {
                fields: fields.clone(),
                keys: HashSet::new(),
            }))
        });
        let mut variants = lock(&entry);
        let mut obsolete = Vec::new();
        if variants.fields != *fields {
            obsolete = variants.keys.drain().collect();
            variants.fields = fields.clone();
        }
        variants.keys.insert(variant.to_string());
        obsolete
    }

    /// Forgets `key`'s variants, returning their keys (to be dropped from the store).
    pub fn forget(&self, key: &str) -> Vec<String> {
        if !self.used.load(Ordering::Relaxed) {
            return Vec::new();
        }
        match self.entries.remove(key) {
            Some(entry) => lock(&entry).keys.drain().collect(),
            None => Vec::new(),
        }
    }
}

impl VaryIndex {
    /// Forgets the variants of every URI key starting with `prefix` (their stored
    /// responses start with it too, and go with a purge of the prefix).
    pub fn forget_prefix(&self, prefix: &str) {
        if !self.used.load(Ordering::Relaxed) {
            return;
        }
        for key in crate::store::keys_starting_with(self.entries.iter(), prefix) {
            self.entries.invalidate(key.as_str());
        }
    }
}

fn lock(entry: &Mutex<Variants>) -> std::sync::MutexGuard<'_, Variants> {
    entry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().expect("value"));
        }
        headers
    }

    #[test]
    fn variants_differ_by_the_named_fields_only() {
        let response = request(&[("vary", "Accept-Encoding, accept-language")]);
        let fields = fields(&response).expect("varies");
        let key = |pairs| variant_key("/a", &fields, &request(pairs));
        assert_eq!(
            key(&[("accept-encoding", "gzip,br"), ("x-other", "1")]),
            key(&[("accept-encoding", "gzip, br")]),
            "other fields and whitespace do not matter"
        );
        assert_ne!(
            key(&[("accept-encoding", "gzip")]),
            key(&[("accept-encoding", "br")])
        );
        assert_ne!(key(&[]), key(&[("accept-language", "fr")]));
    }

    #[test]
    fn the_index_finds_and_forgets_variants() {
        let index = VaryIndex::new();
        let gzip = request(&[("accept-encoding", "gzip")]);
        assert_eq!(index.store_key("/a", &gzip), None, "nothing varies yet");
        let fields = fields(&request(&[("vary", "accept-encoding")])).expect("varies");
        let variant = variant_key("/a", &fields, &gzip);
        assert!(index.record("/a", &fields, &variant).is_empty());
        assert_eq!(index.store_key("/a", &gzip), Some(variant.clone()));
        assert_eq!(index.store_key("/b", &gzip), None);
        let other = fields_of("accept-language");
        assert_eq!(
            index.record("/a", &other, "/a\0accept-language=fr"),
            vec![variant],
            "a change of fields obsoletes the old variants"
        );
        assert_eq!(
            index.forget("/a"),
            vec!["/a\0accept-language=fr".to_string()]
        );
        assert_eq!(index.store_key("/a", &gzip), None);
    }

    fn fields_of(value: &'static str) -> Arc<[HeaderName]> {
        fields(&request(&[("vary", value)])).expect("varies")
    }
}
