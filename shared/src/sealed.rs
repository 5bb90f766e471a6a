//! Bodies held in sealed memory files, so a plain-HTTP connection can send them with
//! `sendfile(2)`: the kernel hands the socket the file's pages instead of copying the
//! bytes into it, and that copy is most of what sending a large body costs (measured
//! on a 1 MiB hit: about half the server's CPU per response; see docs/benchmarks.md).
//!
//! A sealed body is a `memfd` filled once, then sealed against writing, growing and
//! shrinking, mapped read-only and handed out as [`Bytes`] (slices work as usual;
//! TLS connections and everything else read it like any other buffer). The seals are
//! what make this sound: the mapping can never change under a `&[u8]`, and pages the
//! kernel is still sending after the body has been dropped still hold the same bytes.
//!
//! hyper passes a response body to the socket as plain byte slices, so the socket
//! recognises one of these by its address: [`locate`] looks it up in a process-wide
//! index of the mappings (mappings are process-wide, so is their index).
//!
//! Each sealed body holds a file descriptor. At most half the process's limit on open
//! files is used for them; past that, [`copy_of`] says no and the caller keeps the
//! body on the heap, where it is sent the ordinary way.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;

/// Bodies at least this large are worth sealing. Below it, copying costs less than
/// the extra system call a sealed body takes to send (its head goes in one call, its
/// pages in another), and each one would hold a file descriptor for little gain.
pub const WORTH_SEALING: usize = 32 * 1024;

/// Where a slice of a sealed body lies: its file and the offset of its first byte.
#[derive(Debug, Clone)]
pub struct Location {
    /// The sealed file.
    pub file: Arc<File>,
    /// Offset of the slice's first byte in the file.
    pub offset: u64,
}

/// A copy of `chunks` (`size` bytes in all) in a new sealed body, or an error saying
/// why there is none (no room for another file descriptor, or the system refused);
/// the caller then keeps the bytes some other way.
pub fn copy_of(chunks: &[Bytes], size: usize) -> std::io::Result<Bytes> {
    if size == 0 {
        // An empty file cannot be mapped; nothing to gain anyway.
        return Err(std::io::Error::other("an empty body is not sealed"));
    }
    let slot = FileSlot::take()?;
    let fd = rustix::fs::memfd_create(
        "meridian-body",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = File::from(fd);
    file.set_len(size as u64)?;
    let mut written = 0;
    for chunk in chunks {
        file.write_all(chunk)?;
        written += chunk.len();
    }
    if written != size {
        return Err(std::io::Error::other(format!(
            "sealing a body of {size} bytes, given {written}"
        )));
    }
    rustix::fs::fcntl_add_seals(
        &file,
        rustix::fs::SealFlags::WRITE
            | rustix::fs::SealFlags::GROW
            | rustix::fs::SealFlags::SHRINK
            | rustix::fs::SealFlags::SEAL,
    )?;
    let map = map_sealed(&file, size)?;
    let start = map.as_ptr() as usize;
    let file = Arc::new(file);
    index_write().insert(
        start,
        Region {
            end: start + size,
            file,
        },
    );
    Ok(Bytes::from_owner(SealedBody { map, _slot: slot }))
}

/// Where `slice` lies, if it is part of a sealed body (one that is alive: the caller
/// holds the slice).
pub fn locate(slice: &[u8]) -> Option<Location> {
    if slice.is_empty() {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let index = index_read();
    let (&region_start, region) = index.range(..=start).next_back()?;
    (start + slice.len() <= region.end).then(|| Location {
        file: region.file.clone(),
        offset: (start - region_start) as u64,
    })
}

/// Maps `file`, sealed against writing, growing and shrinking, read-only.
#[allow(unsafe_code)]
fn map_sealed(file: &File, size: usize) -> std::io::Result<memmap2::Mmap> {
    let seals = rustix::fs::fcntl_get_seals(file)?;
    let needed =
        rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::SEAL;
    if !seals.contains(needed) || file.metadata()?.len() != size as u64 {
        return Err(std::io::Error::other("the body's file is not sealed"));
    }
    // SAFETY: memmap2 asks that the file not change while mapped. It cannot: it is a
    // memfd of this process, just checked to be sealed against writing and shrinking
    // (and against removing those seals), at exactly `size` bytes.
    unsafe { memmap2::MmapOptions::new().len(size).populate().map(file) }
}

/// What a sealed [`Bytes`] owns: the mapping (its file is in the index). Dropping it
/// takes the mapping out of the index before unmapping it, so [`locate`] never finds a
/// region that is gone (or whose address a new mapping reuses). The file closes when
/// the last sender holding it is done.
struct SealedBody {
    map: memmap2::Mmap,
    _slot: FileSlot,
}

impl AsRef<[u8]> for SealedBody {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for SealedBody {
    fn drop(&mut self) {
        index_write().remove(&(self.map.as_ptr() as usize));
    }
}

/// One sealed body's mapping, by its first address.
struct Region {
    end: usize,
    file: Arc<File>,
}

/// Every live sealed body's mapping, by first address. Held only to look one up,
/// insert or remove (never across an `.await`); poisoning would mean a panic inside
/// `BTreeMap`, and the map is still whole then, so it is used anyway.
static INDEX: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());

fn index_read() -> std::sync::RwLockReadGuard<'static, BTreeMap<usize, Region>> {
    INDEX
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn index_write() -> std::sync::RwLockWriteGuard<'static, BTreeMap<usize, Region>> {
    INDEX
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A file descriptor's worth of room for one sealed body, given back when dropped.
struct FileSlot;

impl FileSlot {
    fn take() -> std::io::Result<FileSlot> {
        let limit = *MAX_LIVE.get_or_init(max_live);
        let taken = LIVE.fetch_add(1, Ordering::Relaxed);
        if taken >= limit {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            return Err(std::io::Error::other(format!(
                "{limit} sealed bodies already open (half the open-file limit)"
            )));
        }
        Ok(FileSlot)
    }
}

impl Drop for FileSlot {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

static MAX_LIVE: OnceLock<usize> = OnceLock::new();

/// Half the soft limit on open files (read once): the other half stays for
/// connections, the disk tier and everything else.
fn max_live() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.map_or(usize::MAX, |files| {
        usize::try_from(files / 2).unwrap_or(usize::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn pattern(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_sealed_body_holds_what_it_was_given_and_its_slices_are_found() {
        let bytes = pattern(100_000);
        let chunks = [
            Bytes::copy_from_slice(&bytes[..40_000]),
            Bytes::copy_from_slice(&bytes[40_000..]),
        ];
        let body = copy_of(&chunks, bytes.len()).expect("sealed");
        assert_eq!(body.as_ref(), bytes.as_slice());

        let whole = locate(&body).expect("found");
        let slice = body.slice(12_345..54_321);
        let part = locate(&slice).expect("slice found");
        assert!(Arc::ptr_eq(&part.file, &whole.file));
        assert_eq!((whole.offset, part.offset), (0, 12_345));
        // Reading the file at that offset gives the slice's bytes.
        let mut read = vec![0; slice.len()];
        std::os::unix::fs::FileExt::read_exact_at(&*part.file, &mut read, part.offset)
            .expect("read");
        assert_eq!(read, slice.as_ref());
    }

    #[test]
    fn the_file_is_sealed_against_every_change() {
        let body = copy_of(&[Bytes::from(pattern(WORTH_SEALING))], WORTH_SEALING).expect("sealed");
        let at = locate(&body).expect("found");
        let path = format!("/proc/self/fd/{}", at.file.as_raw_fd());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("reopened for writing");
        let mut writer = &file;
        assert!(
            writer.write_all(b"changed").is_err(),
            "a write went through"
        );
        assert!(file.set_len(1).is_err(), "shrunk");
        assert!(file.set_len(1 << 20).is_err(), "grown");
        assert_eq!(body.as_ref(), pattern(WORTH_SEALING).as_slice());
    }

    #[test]
    fn a_dropped_body_is_taken_out_of_the_index() {
        let body = copy_of(&[Bytes::from(pattern(50_000))], 50_000).expect("sealed");
        let start = body.as_ptr() as usize;
        assert!(locate(&body).is_some());
        let slice = body.slice(100..200);
        drop(body);
        // The slice keeps the mapping alive.
        assert!(locate(&slice).is_some());
        drop(slice);
        assert!(
            index_read().get(&start).is_none(),
            "the index still holds a dropped mapping"
        );
    }

    #[test]
    fn ordinary_buffers_and_wrong_sizes_are_not_sealed_bodies() {
        let heap = Bytes::from(pattern(WORTH_SEALING));
        assert!(locate(&heap).is_none());
        assert!(locate(&[]).is_none());
        assert!(copy_of(&[], 0).is_err());
        let short = copy_of(&[Bytes::from(pattern(10))], 20);
        assert!(short.is_err(), "a body shorter than announced was sealed");
    }
}
