//! Read-only memory maps and typed views of their bytes. All of the engine's
//! mmap `unsafe` lives here.
//!
//! # Safety model
//!
//! A memory map is only sound while nobody changes the file under it. The
//! engine maps only *sealed* files: written completely to a temporary name,
//! fsynced, then renamed into place and never written again (see
//! [`super::fs`]). Another process truncating or rewriting such a file
//! would break that contract (reads would see new bytes or fault with
//! `SIGBUS`); that is the same assumption every mmap-based store makes
//! about its own data directory.
//!
//! Typed views are made with `bytemuck`, which checks size and alignment;
//! a file whose sections are misaligned or mis-sized is reported as
//! [`Error::Corrupted`], never transmuted.

use std::fs::File;
use std::path::{Path, PathBuf};

use bytemuck::Pod;

use crate::error::{Error, IoContext, Result};

/// A whole file mapped read-only. Zero-length files are not mapped.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    map: Option<memmap2::Mmap>,
}

impl MappedFile {
    /// Opens and maps `path`.
    pub fn open(path: &Path) -> Result<MappedFile> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the file is a sealed engine file, never modified after
            // its rename into place (module docs); the map is read-only.
            let map = unsafe { memmap2::Mmap::map(&file) }.at(path)?;
            Some(map)
        };
        Ok(MappedFile {
            path: path.to_path_buf(),
            map,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tells the kernel the file will be read sequentially (scans).
    pub fn advise_sequential(&self) {
        if let Some(map) = &self.map {
            // Advice is a hint; failing to give it changes nothing but speed.
            let _ = map.advise(memmap2::Advice::Sequential);
        }
    }
}

/// Views `bytes[offset..offset + count * size_of::<T>()]` as `&[T]`.
///
/// Out-of-range sections and misaligned offsets are [`Error::Corrupted`]
/// naming `path` and `what`.
pub fn section<'a, T: Pod>(
    bytes: &'a [u8],
    offset: usize,
    count: usize,
    path: &Path,
    what: &str,
) -> Result<&'a [T]> {
    let len = count
        .checked_mul(size_of::<T>())
        .and_then(|n| n.checked_add(offset).map(|end| (n, end)));
    let Some((len, end)) = len else {
        return Err(Error::corrupted(path, format!("{what}: size overflows")));
    };
    let Some(raw) = bytes.get(offset..end) else {
        return Err(Error::corrupted(
            path,
            format!(
                "{what}: section {offset}..{end} lies outside the file ({} bytes)",
                bytes.len()
            ),
        ));
    };
    debug_assert_eq!(raw.len(), len);
    bytemuck::try_cast_slice(raw)
        .map_err(|e| Error::corrupted(path, format!("{what}: cannot view as values: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_files_are_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        let m = MappedFile::open(&path).unwrap();
        assert!(m.bytes().is_empty());
    }

    #[test]
    fn sections_are_bounds_and_alignment_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [1u8; 64]).unwrap();
        let m = MappedFile::open(&path).unwrap();
        let words: &[u64] = section(m.bytes(), 8, 7, &path, "ids").unwrap();
        assert_eq!(words.len(), 7);
        let err = section::<u64>(m.bytes(), 8, 8, &path, "ids").unwrap_err();
        assert!(matches!(err, Error::Corrupted { .. }), "{err}");
        let err = section::<u64>(m.bytes(), 3, 1, &path, "ids").unwrap_err();
        assert!(err.to_string().contains("cannot view"), "{err}");
        let err = section::<u64>(m.bytes(), 0, usize::MAX, &path, "ids").unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let err = MappedFile::open(Path::new("/nonexistent/biomatch/file")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/biomatch/file"),
            "{err}"
        );
    }
}
