//! Cutting byte ranges out of a body as it streams: one range (206 with
//! `Content-Range`) or several (`multipart/byteranges`), in one pass over the body, so
//! a range answer never waits for more of the body than it needs.

use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use meridian_shared::storage::ByteStream;

/// The bytes of `ranges` (ascending, not overlapping) out of `body`, whose chunks
/// together hold `size` bytes; with `multipart`, each range as a part of a
/// `multipart/byteranges` body (see [`Multipart::length`]).
pub fn cut(body: ByteStream, ranges: Vec<Range<u64>>, multipart: Option<Multipart>) -> ByteStream {
    Box::pin(async_stream::try_stream! {
        let mut body = body;
        let mut position = 0u64;
        let mut next = 0usize;
        let mut in_part = false;
        while next < ranges.len() {
            let Some(chunk) = body.next().await else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the body ended before the ranges asked of it",
                ))?;
                break;
            };
            let chunk = chunk?;
            let (chunk_start, chunk_end) = (position, position + chunk.len() as u64);
            position = chunk_end;
            while let Some(range) = ranges.get(next) {
                if range.start >= chunk_end {
                    break;
                }
                if !in_part {
                    if let Some(parts) = &multipart {
                        yield Bytes::from(parts.part_header(range));
                    }
                    in_part = true;
                }
                let from = range.start.max(chunk_start) - chunk_start;
                let to = range.end.min(chunk_end) - chunk_start;
                if from < to {
                    yield chunk.slice(from as usize..to as usize);
                }
                if range.end > chunk_end {
                    break; // the range goes on in the next chunk
                }
                in_part = false;
                next += 1;
                if multipart.is_some() {
                    yield Bytes::from_static(b"\r\n");
                }
            }
        }
        if let Some(parts) = &multipart {
            yield Bytes::from(parts.closing());
        }
    })
}

/// How the parts of a `multipart/byteranges` body are labelled.
#[derive(Debug, Clone)]
pub struct Multipart {
    /// The boundary between parts.
    pub boundary: String,
    /// The representation's content type, repeated in every part.
    pub content_type: String,
    /// The representation's length, in every `Content-Range`.
    pub size: u64,
}

impl Multipart {
    fn part_header(&self, range: &Range<u64>) -> String {
        format!(
            "--{}\r\nContent-Type: {}\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
            self.boundary,
            self.content_type,
            range.start,
            range.end - 1,
            self.size
        )
    }

    fn closing(&self) -> String {
        format!("--{}--\r\n", self.boundary)
    }

    /// The whole multipart body's length, for `Content-Length`.
    pub fn length(&self, ranges: &[Range<u64>]) -> u64 {
        let parts: u64 = ranges
            .iter()
            .map(|r| self.part_header(r).len() as u64 + (r.end - r.start) + 2)
            .sum();
        parts + self.closing().len() as u64
    }
}

#[cfg(test)]
// A list holding one range is what these functions take and give.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> ByteStream {
        let chunks: Vec<std::io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Box::pin(futures::stream::iter(chunks))
    }

    async fn collected(stream: ByteStream) -> Vec<u8> {
        meridian_shared::storage::collect(stream)
            .await
            .expect("body")
            .to_vec()
    }

    #[tokio::test]
    async fn one_range_across_chunks() {
        let cut = cut(body(&[b"0123", b"4567", b"89"]), vec![2..7], None);
        assert_eq!(collected(cut).await, b"23456");
    }

    #[tokio::test]
    async fn several_ranges_as_parts_of_the_announced_length() {
        let parts = Multipart {
            boundary: "B".into(),
            content_type: "text/plain".into(),
            size: 10,
        };
        let ranges = vec![0..2, 8..10];
        let out = collected(cut(
            body(&[b"0123", b"4567", b"89"]),
            ranges.clone(),
            Some(parts.clone()),
        ))
        .await;
        let expected = "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\r\n\
                        --B\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n\
                        --B--\r\n";
        assert_eq!(String::from_utf8(out.clone()).expect("text"), expected);
        assert_eq!(parts.length(&ranges), out.len() as u64);
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_ranges_is_an_error() {
        let mut cut = cut(body(&[b"0123"]), vec![2..8], None);
        assert_eq!(
            cut.next().await.expect("part").expect("bytes").as_ref(),
            b"23"
        );
        assert!(cut.next().await.expect("end").is_err());
    }
}
