//! The IDX format of the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or gzip.
//!
//! Layout: two zero bytes, a type code (0x08 for unsigned bytes, the only type these data sets
//! use), the number of dimensions, then each dimension as a big-endian u32, then the values in
//! row-major order.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use crate::error::{DataError, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const TYPE_U8: u8 = 0x08;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file, decompressing it first if it is gzip (detected from its content, not its
/// name).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_idx(&bytes, path)
}

/// Parses IDX bytes (raw or gzip); `path` only names the origin in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    if bytes.starts_with(&GZIP_MAGIC) {
        parse_stream(GzDecoder::new(bytes), path)
    } else {
        parse_stream(bytes, path)
    }
}

fn parse_stream(mut reader: impl Read, path: &Path) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    read_exact(&mut reader, &mut magic, path, "the 4-byte magic number")?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::malformed(
            path,
            format!(
                "not an IDX file: magic number {:02x}{:02x}{:02x}{:02x} should start with 0000",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != TYPE_U8 {
        return Err(DataError::malformed(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported (only 0x08, unsigned bytes)",
                magic[2]
            ),
        ));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(DataError::malformed(
            path,
            "IDX header declares 0 dimensions",
        ));
    }
    let mut header = vec![0u8; 4 * ndim];
    read_exact(&mut reader, &mut header, path, "the dimension sizes")?;
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::malformed(path, format!("dimensions {dims:?} overflow")))?;

    // Never trust the header with an allocation: read what is really there (plus one byte, to
    // notice trailing data) and compare.
    let mut data = Vec::new();
    reader
        .take(expected as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| DataError::malformed(path, format!("corrupt data: {e}")))?;
    if data.len() < expected {
        return Err(DataError::malformed(
            path,
            format!(
                "truncated: header {dims:?} promises {expected} bytes of data, found {}",
                data.len()
            ),
        ));
    }
    if data.len() > expected {
        return Err(DataError::malformed(
            path,
            format!("trailing data after the {expected} bytes that header {dims:?} promises"),
        ));
    }
    Ok(IdxArray { dims, data })
}

fn read_exact(reader: &mut impl Read, buf: &mut [u8], path: &Path, what: &str) -> Result<()> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            DataError::malformed(path, format!("truncated: file ends inside {what}"))
        }
        _ => DataError::malformed(path, format!("corrupt data while reading {what}: {e}")),
    })
}

/// Encodes an array as raw IDX bytes (unsigned bytes); the inverse of [`parse_idx`].
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, TYPE_U8, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};
    use proptest::prelude::*;

    use super::*;

    fn p() -> &'static Path {
        Path::new("x.idx")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn reads_raw_and_gzip_alike() {
        let raw = encode_idx(&[2, 3, 2], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let a = parse_idx(&raw, p()).unwrap();
        let b = parse_idx(&gzip(&raw), p()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dims, vec![2, 3, 2]);
        assert_eq!(a.data[11], 12);
    }

    #[test]
    fn wrong_magic_is_an_error() {
        let err = parse_idx(b"\x12\x34\x08\x01\0\0\0\x01\x05", p()).unwrap_err();
        assert!(err.to_string().contains("not an IDX file"), "{err}");
    }

    #[test]
    fn unsupported_type_is_an_error() {
        let err = parse_idx(b"\0\0\x0d\x01\0\0\0\x01\0\0\0\0", p()).unwrap_err();
        assert!(err.to_string().contains("0x0d"), "{err}");
    }

    #[test]
    fn truncated_header_and_data_are_errors() {
        let err = parse_idx(b"\0\0\x08\x03\0\0", p()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let mut raw = encode_idx(&[4, 2, 2], &[7; 16]);
        raw.truncate(raw.len() - 3);
        let err = parse_idx(&raw, p()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = parse_idx(&gzip(&raw), p()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_huge_header_does_not_allocate_what_it_claims() {
        // 2^31 images of 28x28 would be 1.6 TB.
        let mut raw = vec![0, 0, 8, 3];
        for d in [1u32 << 31, 28, 28] {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw.extend_from_slice(&[0; 100]);
        let err = parse_idx(&raw, p()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut raw = encode_idx(&[2], &[1, 2]);
        raw.push(3);
        assert!(
            parse_idx(&raw, p())
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_idx(Path::new("/nonexistent/train-images-idx3-ubyte")).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/train-images-idx3-ubyte")
        );
    }

    proptest! {
        #[test]
        fn round_trips(dims in proptest::collection::vec(1usize..6, 1..4), seed in any::<u8>()) {
            let n: usize = dims.iter().product();
            let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let raw = encode_idx(&dims, &data);
            let back = parse_idx(&raw, p()).unwrap();
            prop_assert_eq!(&back.dims, &dims);
            prop_assert_eq!(&back.data, &data);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_idx(&bytes, p());
        }
    }
}
