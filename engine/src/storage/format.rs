//! The envelope every biomatch file shares.
//!
//! ```text
//! header (64 bytes)
//!   0..8    magic "BIOMATCH"
//!   8..12   kind tag ("SEGM", "MANI", "VLOG", "TOMB")
//!   12..14  format version of that kind (u16, little-endian)
//!   14..16  zero
//!   16..64  kind-specific fields (little-endian)
//! body
//! footer (32 bytes; whole-file kinds only — logs checksum each record instead)
//!   0..8    body end = offset of the footer (u64)
//!   8..16   xxh3-64 of bytes 0..body end (u64)
//!   16..24  zero
//!   24..32  end magic "BMFOOTER"
//! ```
//!
//! A file with another magic or kind is [`Error::IncompatibleFormat`]; a
//! version newer than this build reads is also `IncompatibleFormat`; a bad
//! footer, checksum or length is [`Error::Corrupted`].

use std::hash::Hasher;
use std::path::Path;

use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};

/// First 8 bytes of every biomatch file.
pub const MAGIC: [u8; 8] = *b"BIOMATCH";
/// Last 8 bytes of every whole-file-checksummed biomatch file.
pub const END_MAGIC: [u8; 8] = *b"BMFOOTER";
/// Header length.
pub const HEADER_LEN: usize = 64;
/// Footer length.
pub const FOOTER_LEN: usize = 32;
/// Bytes of kind-specific header fields.
pub const FIELDS_LEN: usize = HEADER_LEN - 16;

/// What a file holds. Each kind has its own format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A sealed vector segment ([`super::segment`]).
    Segment,
    /// An index manifest.
    Manifest,
    /// The append log of an index's writable segment.
    VectorLog,
    /// An index's deleted-id log.
    Tombstones,
}

impl FileKind {
    /// The 4-byte tag stored in the header.
    pub fn tag(self) -> [u8; 4] {
        match self {
            FileKind::Segment => *b"SEGM",
            FileKind::Manifest => *b"MANI",
            FileKind::VectorLog => *b"VLOG",
            FileKind::Tombstones => *b"TOMB",
        }
    }

    /// The format version this build writes and the newest it reads.
    pub fn version(self) -> u16 {
        1
    }

    fn from_tag(tag: [u8; 4]) -> Option<FileKind> {
        [
            FileKind::Segment,
            FileKind::Manifest,
            FileKind::VectorLog,
            FileKind::Tombstones,
        ]
        .into_iter()
        .find(|k| k.tag() == tag)
    }
}

/// Encodes a header for `kind` at its current version.
pub fn encode_header(kind: FileKind, fields: &[u8; FIELDS_LEN]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&kind.tag());
    h[12..14].copy_from_slice(&kind.version().to_le_bytes());
    h[16..].copy_from_slice(fields);
    h
}

/// Checks magic, kind and version and returns the kind-specific fields.
pub fn decode_header(bytes: &[u8], kind: FileKind, path: &Path) -> Result<[u8; FIELDS_LEN]> {
    let Some(h) = bytes.get(..HEADER_LEN) else {
        return Err(Error::corrupted(
            path,
            format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    };
    if h[0..8] != MAGIC {
        return Err(Error::IncompatibleFormat {
            path: path.to_path_buf(),
            reason: "not a biomatch file (bad magic)".into(),
        });
    }
    let tag: [u8; 4] = h[8..12].try_into().expect("4 bytes");
    if tag != kind.tag() {
        let found = FileKind::from_tag(tag)
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|| format!("unknown kind {:?}", String::from_utf8_lossy(&tag)));
        return Err(Error::IncompatibleFormat {
            path: path.to_path_buf(),
            reason: format!("expected a {kind:?} file, found {found}"),
        });
    }
    let version = u16::from_le_bytes([h[12], h[13]]);
    if version == 0 || version > kind.version() {
        return Err(Error::IncompatibleFormat {
            path: path.to_path_buf(),
            reason: format!(
                "{kind:?} format version {version}; this build reads up to version {}",
                kind.version()
            ),
        });
    }
    Ok(h[16..].try_into().expect("48 bytes"))
}

/// Encodes the footer of a body that ends at `body_end` with `checksum`.
pub fn encode_footer(body_end: u64, checksum: u64) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[0..8].copy_from_slice(&body_end.to_le_bytes());
    f[8..16].copy_from_slice(&checksum.to_le_bytes());
    f[24..32].copy_from_slice(&END_MAGIC);
    f
}

/// Checks the footer of a whole file (and, if `verify`, its checksum);
/// returns the bytes before the footer.
pub fn check_footer<'a>(bytes: &'a [u8], path: &Path, verify: bool) -> Result<&'a [u8]> {
    if bytes.len() < HEADER_LEN + FOOTER_LEN {
        return Err(Error::corrupted(
            path,
            format!(
                "{} bytes cannot hold a header and a footer (truncated?)",
                bytes.len()
            ),
        ));
    }
    let (body, footer) = bytes.split_at(bytes.len() - FOOTER_LEN);
    if footer[24..32] != END_MAGIC {
        return Err(Error::corrupted(
            path,
            "footer magic missing (truncated or overwritten)",
        ));
    }
    let body_end = u64::from_le_bytes(footer[0..8].try_into().expect("8 bytes"));
    if body_end != body.len() as u64 {
        return Err(Error::corrupted(
            path,
            format!(
                "footer says the body ends at {body_end}, file has {}",
                body.len()
            ),
        ));
    }
    if verify {
        let stored = u64::from_le_bytes(footer[8..16].try_into().expect("8 bytes"));
        let actual = checksum(body);
        if stored != actual {
            return Err(Error::corrupted(
                path,
                format!("checksum mismatch: stored {stored:016x}, computed {actual:016x}"),
            ));
        }
    }
    Ok(body)
}

/// The checksum used by every format (xxh3, 64-bit).
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Incremental form of [`checksum`] for streamed writes.
#[derive(Clone, Default)]
pub struct Checksum(Xxh3);

impl Checksum {
    /// A fresh checksum.
    pub fn new() -> Checksum {
        Checksum(Xxh3::new())
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The checksum of everything added.
    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// Little-endian writer for the 48 bytes of kind-specific header fields.
#[derive(Debug)]
pub struct Fields {
    bytes: [u8; FIELDS_LEN],
    at: usize,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            bytes: [0; FIELDS_LEN],
            at: 0,
        }
    }
}

impl Fields {
    /// Appends a byte.
    pub fn u8(mut self, v: u8) -> Self {
        self.put(&[v]);
        self
    }

    /// Appends a `u32`.
    pub fn u32(mut self, v: u32) -> Self {
        self.put(&v.to_le_bytes());
        self
    }

    /// Appends a `u64`.
    pub fn u64(mut self, v: u64) -> Self {
        self.put(&v.to_le_bytes());
        self
    }

    fn put(&mut self, b: &[u8]) {
        self.bytes[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    /// The encoded fields.
    pub fn finish(self) -> [u8; FIELDS_LEN] {
        self.bytes
    }
}

/// Little-endian reader for kind-specific header fields.
#[derive(Debug)]
pub struct FieldReader<'a> {
    bytes: &'a [u8; FIELDS_LEN],
    at: usize,
}

impl<'a> FieldReader<'a> {
    /// Reads `fields` from the start.
    pub fn new(bytes: &'a [u8; FIELDS_LEN]) -> Self {
        FieldReader { bytes, at: 0 }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let v = self.bytes[self.at..self.at + N]
            .try_into()
            .expect("N bytes");
        self.at += N;
        v
    }

    /// Next byte.
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    /// Next `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    /// Next `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(kind: FileKind, body: &[u8]) -> Vec<u8> {
        let mut f = encode_header(kind, &Fields::default().u32(7).finish()).to_vec();
        f.extend_from_slice(body);
        let sum = checksum(&f);
        f.extend_from_slice(&encode_footer(f.len() as u64, sum));
        f
    }

    #[test]
    fn round_trip() {
        let f = file_with(FileKind::Manifest, b"hello");
        let p = Path::new("m");
        let body = check_footer(&f, p, true).unwrap();
        let fields = decode_header(body, FileKind::Manifest, p).unwrap();
        assert_eq!(FieldReader::new(&fields).u32(), 7);
        assert_eq!(&body[HEADER_LEN..], b"hello");
    }

    #[test]
    fn wrong_magic_kind_and_version_are_incompatible() {
        let p = Path::new("x");
        let mut f = file_with(FileKind::Segment, b"");
        assert!(matches!(
            decode_header(&f, FileKind::Manifest, p),
            Err(Error::IncompatibleFormat { .. })
        ));
        f[12] = 9;
        let err = decode_header(&f, FileKind::Segment, p).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
        f[0] = b'X';
        let err = decode_header(&f, FileKind::Segment, p).unwrap_err();
        assert!(err.to_string().contains("bad magic"), "{err}");
    }

    #[test]
    fn truncation_and_bit_flips_are_corruption() {
        let p = Path::new("x");
        let f = file_with(FileKind::Manifest, b"some body bytes");
        for cut in [1, 5, FOOTER_LEN, f.len() - 10] {
            let err = check_footer(&f[..f.len() - cut], p, true).unwrap_err();
            assert!(matches!(err, Error::Corrupted { .. }), "cut {cut}: {err}");
        }
        for bit in [0, 8 * 70, 8 * (f.len() - 40)] {
            let mut g = f.clone();
            g[bit / 8] ^= 1 << (bit % 8);
            let r = check_footer(&g, p, true).and_then(|b| decode_header(b, FileKind::Manifest, p));
            assert!(r.is_err(), "flip at bit {bit} undetected");
        }
    }
}
