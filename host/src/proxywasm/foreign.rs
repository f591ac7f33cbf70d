//! The foreign functions a plugin reaches with `proxy_call_foreign_function`: Envoy's `compress`
//! and `uncompress` (zlib streams, RFC 1950, as Envoy's `compress()`/`uncompress()` of zlib).
//! Envoy's others (CEL expressions, `declare_property`, filter-state setters) are not offered:
//! NOT_FOUND, which the SDKs return to the filter as an error.

use super::abi::Status;
use flate2::write::ZlibEncoder;
use flate2::{Compression, Decompress, FlushDecompress};
use std::io::Write;

/// The most either function takes or gives. Host code runs outside the callback deadline, so a
/// plugin must not be able to keep a worker busy in it for long (1 MiB is Envoy's bound on a
/// header map, `limits.h`).
const MAX_BYTES: usize = 1 << 20;

/// Runs the foreign function `name` on `arguments`.
pub(super) fn call(name: &[u8], arguments: &[u8]) -> Result<Vec<u8>, Status> {
    match name {
        b"compress" => compress(arguments),
        b"uncompress" => uncompress(arguments),
        _ => Err(Status::NotFound),
    }
}

/// zlib's `compress()` at its default level, as Envoy's `compress`; BAD_ARGUMENT over
/// [`MAX_BYTES`].
fn compress(data: &[u8]) -> Result<Vec<u8>, Status> {
    if data.len() > MAX_BYTES {
        return Err(Status::BadArgument);
    }
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map_err(|_| Status::SerializationFailure)
}

/// zlib's `uncompress()`, as Envoy's `uncompress`: SERIALIZATION_FAILURE for bytes that are not a
/// whole zlib stream (corrupt or truncated, zlib's Z_DATA_ERROR) or that inflate past
/// [`MAX_BYTES`]. Bytes after the stream's end are ignored, as zlib does.
fn uncompress(data: &[u8]) -> Result<Vec<u8>, Status> {
    let mut inflate = Decompress::new(true);
    let mut out = Vec::new();
    loop {
        out.reserve(out.len().max(1024));
        let (read, written) = (inflate.total_in(), inflate.total_out());
        let rest = usize::try_from(read)
            .ok()
            .and_then(|read| data.get(read..))
            .unwrap_or_default();
        // `None`, not `Finish`: miniz's `Finish` wants all the output to fit in the first call.
        let status = inflate
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .map_err(|_| Status::SerializationFailure)?;
        if out.len() > MAX_BYTES {
            return Err(Status::SerializationFailure);
        }
        if status == flate2::Status::StreamEnd {
            return Ok(out);
        }
        // With room to write and nothing read or written, the input ended mid-stream.
        if inflate.total_in() == read && inflate.total_out() == written {
            return Err(Status::SerializationFailure);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use std::io::Read;

    #[test]
    fn compress_writes_a_zlib_stream_that_uncompress_reads_back() {
        let text = b"hello, hello, hello, hello".repeat(100);
        let compressed = call(b"compress", &text).unwrap();
        assert!(compressed.len() < text.len() / 10);
        // RFC 1950: CMF 0x78 (deflate, 32 KiB window), and CMF·256 + FLG a multiple of 31.
        assert_eq!(compressed[0], 0x78);
        assert_eq!(u16::from_be_bytes([compressed[0], compressed[1]]) % 31, 0);
        // Another decoder reads it too (flate2's streaming reader, not `Decompress` by hand).
        let mut read_back = Vec::new();
        flate2::read::ZlibDecoder::new(&compressed[..])
            .read_to_end(&mut read_back)
            .unwrap();
        assert_eq!(read_back, text);
        assert_eq!(call(b"uncompress", &compressed).unwrap(), text);
        assert_eq!(
            call(b"uncompress", &call(b"compress", b"").unwrap()).unwrap(),
            b""
        );
    }

    #[test]
    fn bad_streams_unknown_names_and_oversized_data_are_refused() {
        let compressed = call(b"compress", b"hello").unwrap();
        let truncated = &compressed[..compressed.len() - 3];
        assert_eq!(
            call(b"uncompress", truncated),
            Err(Status::SerializationFailure)
        );
        assert_eq!(
            call(b"uncompress", b"not zlib"),
            Err(Status::SerializationFailure)
        );
        assert_eq!(call(b"uncompress", b""), Err(Status::SerializationFailure));
        let mut trailing = compressed.clone();
        trailing.extend_from_slice(b"after the end");
        assert_eq!(call(b"uncompress", &trailing).unwrap(), b"hello");
        assert_eq!(call(b"expr_create", b"1 + 1"), Err(Status::NotFound));
        // Data over the limit is refused, as is a small stream that inflates past it (a zip bomb).
        let too_big = call(b"compress", &vec![0; MAX_BYTES + 1]);
        assert_eq!(too_big, Err(Status::BadArgument));
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&vec![0; MAX_BYTES + 1]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 4096);
        assert_eq!(
            call(b"uncompress", &bomb),
            Err(Status::SerializationFailure)
        );
        let at_limit = call(b"compress", &vec![7; MAX_BYTES]).unwrap();
        assert_eq!(call(b"uncompress", &at_limit).unwrap().len(), MAX_BYTES);
    }
}
