//! One response as one file:
//!
//! ```text
//! body | metadata (JSON) | footer: magic, body length, metadata length,
//!                                  CRC32C of the metadata, CRC32C of the body
//! ```
//!
//! written whole under `tmp/` and renamed into `objects/<xx>/<id>`; the metadata can be
//! rewritten in place after the body (a revalidation). Reading checks what it reads:
//! the footer and metadata at start, the body before it is served.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The first bytes of every footer: the format and its version.
const MAGIC: &[u8; 8] = b"MRDNDSK1";
/// Magic, body length (u64), metadata length, metadata CRC32C, body CRC32C (u32 each).
pub(super) const FOOTER_LEN: usize = 8 + 8 + 4 + 4 + 4;
/// Files never carry metadata larger than this (a bound on what a corrupt
/// footer can make the recovery read).
const MAX_META_LEN: u32 = 1024 * 1024;

/// What a file records of its response, besides the body.
#[derive(Serialize, Deserialize)]
pub(super) struct FileMeta {
    pub(super) key: String,
    pub(super) status: u16,
    /// Names and values; values as Latin-1 text, so bytes beyond ASCII survive.
    pub(super) headers: Vec<(String, String)>,
    pub(super) source_generation: i64,
    /// When the response was generated (wall clock, ms since the Unix epoch).
    pub(super) generated_ms: i64,
    pub(super) fresh_for_ms: u64,
    /// When the copy was last known current: written, or revalidated.
    pub(super) verified_ms: i64,
}

pub(super) struct Footer {
    pub(super) body_len: u64,
    pub(super) meta_len: u32,
    pub(super) meta_crc: u32,
    pub(super) body_crc: u32,
}

impl Footer {
    fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut raw = [0u8; FOOTER_LEN];
        raw[..8].copy_from_slice(MAGIC);
        raw[8..16].copy_from_slice(&self.body_len.to_le_bytes());
        raw[16..20].copy_from_slice(&self.meta_len.to_le_bytes());
        raw[20..24].copy_from_slice(&self.meta_crc.to_le_bytes());
        raw[24..28].copy_from_slice(&self.body_crc.to_le_bytes());
        raw
    }

    fn decode(raw: &[u8; FOOTER_LEN]) -> Option<Footer> {
        if &raw[..8] != MAGIC {
            return None;
        }
        let u32_at = |at: usize| {
            let mut four = [0u8; 4];
            four.copy_from_slice(&raw[at..at + 4]);
            u32::from_le_bytes(four)
        };
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&raw[8..16]);
        Some(Footer {
            body_len: u64::from_le_bytes(eight),
            meta_len: u32_at(16),
            meta_crc: u32_at(20),
            body_crc: u32_at(24),
        })
    }
}

/// Writes `body` and `record` as a new file under `tmp/`, then renames it into
/// `objects/`. Returns the file and the body's CRC32C.
pub(super) fn write_file(
    dir: &Path,
    body: &[Bytes],
    record: &FileMeta,
) -> std::io::Result<(PathBuf, u32)> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let temporary = dir.join("tmp").join(&id);
    let shard = dir.join("objects").join(&id[..2]);
    fs::create_dir_all(&shard)?;
    let mut out = std::io::BufWriter::new(fs::File::create(&temporary)?);
    let mut body_crc = 0;
    let mut body_len = 0u64;
    let written = (|| {
        for chunk in body {
            body_crc = crc32c::crc32c_append(body_crc, chunk);
            body_len += chunk.len() as u64;
            out.write_all(chunk)?;
        }
        write_meta(&mut out, body_len, body_crc, record)?;
        out.flush()
    })();
    let file = shard.join(&id);
    match written.and_then(|()| fs::rename(&temporary, &file)) {
        Ok(()) => Ok((file, body_crc)),
        Err(e) => {
            delete(&temporary);
            Err(e)
        }
    }
}

/// Cuts `file` back to its body and writes `record` and a new footer after it.
pub(super) fn rewrite_meta(
    file: &Path,
    body_len: u64,
    body_crc: u32,
    record: &FileMeta,
) -> std::io::Result<()> {
    let mut handle = fs::OpenOptions::new().write(true).open(file)?;
    handle.set_len(body_len)?;
    handle.seek(SeekFrom::Start(body_len))?;
    let mut out = std::io::BufWriter::new(handle);
    write_meta(&mut out, body_len, body_crc, record)?;
    out.flush()
}

fn write_meta(
    out: &mut impl Write,
    body_len: u64,
    body_crc: u32,
    record: &FileMeta,
) -> std::io::Result<()> {
    let json = serde_json::to_vec(record)?;
    let footer = Footer {
        body_len,
        meta_len: u32::try_from(json.len()).map_err(std::io::Error::other)?,
        meta_crc: crc32c::crc32c(&json),
        body_crc,
    };
    out.write_all(&json)?;
    out.write_all(&footer.encode())
}

/// The first `len` bytes of `file`, if they are all there and their CRC32C is `crc`.
pub(super) fn read_checked(file: &Path, len: u64, crc: u32) -> std::io::Result<Bytes> {
    let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    fs::File::open(file)?.take(len).read_to_end(&mut body)?;
    if body.len() as u64 != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("cut short: {} of {len} bytes", body.len()),
        ));
    }
    if crc32c::crc32c(&body) != crc {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "fails its checksum",
        ));
    }
    Ok(Bytes::from(body))
}

/// Every file one level of shards down from `objects`.
pub(super) fn files_under(objects: &Path) -> Vec<PathBuf> {
    let Ok(shards) = fs::read_dir(objects) else {
        return Vec::new();
    };
    shards
        .flatten()
        .filter_map(|shard| fs::read_dir(shard.path()).ok())
        .flat_map(|files| files.flatten().map(|file| file.path()))
        .collect()
}

/// Deletes every file in `dir`. Returns how many.
pub(super) fn clear_dir(dir: &Path) -> u64 {
    let Ok(files) = fs::read_dir(dir) else {
        return 0;
    };
    let mut cleared = 0;
    for file in files.flatten() {
        delete(&file.path());
        cleared += 1;
    }
    cleared
}

pub(super) fn delete(file: &Path) {
    if let Err(e) = fs::remove_file(file)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %file.display(), cause = %e, "cannot delete a disk copy");
    }
}

/// The footer and metadata of `file`, if they check out: the magic, lengths that add
/// up to the file's, and the metadata's checksum. (The body is checked when read.)
pub(super) fn read_record(file: &Path) -> Option<(Footer, FileMeta)> {
    let mut handle = fs::File::open(file).ok()?;
    let len = handle.metadata().ok()?.len();
    let footer_at = len.checked_sub(FOOTER_LEN as u64)?;
    handle.seek(SeekFrom::Start(footer_at)).ok()?;
    let mut raw = [0u8; FOOTER_LEN];
    handle.read_exact(&mut raw).ok()?;
    let footer = Footer::decode(&raw)?;
    if footer.meta_len > MAX_META_LEN
        || footer.body_len + u64::from(footer.meta_len) + FOOTER_LEN as u64 != len
    {
        return None;
    }
    handle.seek(SeekFrom::Start(footer.body_len)).ok()?;
    let mut json = vec![0u8; footer.meta_len as usize];
    handle.read_exact(&mut json).ok()?;
    if crc32c::crc32c(&json) != footer.meta_crc {
        return None;
    }
    let record: FileMeta = serde_json::from_slice(&json).ok()?;
    Some((footer, record))
}
