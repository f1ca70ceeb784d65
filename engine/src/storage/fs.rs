//! Crash-safe file replacement: write `NAME.tmp`, fsync it, rename it over
//! `NAME`, fsync the directory. After a crash a reader sees either the old
//! file or the complete new one, never a mixture; a leftover `*.tmp` is
//! garbage that [`remove_stale_temps`] clears at open.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Suffix of files being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// fsyncs a directory so that renames and creations in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).at(dir)?.sync_all().at(dir)
}

/// A file written under a temporary name and atomically moved into place by
/// [`AtomicFile::commit`]. Dropped without commit, the temporary is removed.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    target: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing the replacement for `target`.
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let mut name = target.as_os_str().to_owned();
        name.push(TMP_SUFFIX);
        let tmp = PathBuf::from(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .at(&tmp)?;
        Ok(AtomicFile {
            tmp,
            target: target.to_path_buf(),
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Writes all of `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer().write_all(bytes).at(&self.tmp)
    }

    fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer.as_mut().expect("writer present until commit")
    }

    /// Path of the temporary file (for error messages).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes, fsyncs, renames into place and fsyncs the directory.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer
            .into_inner()
            .map_err(|e| crate::Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().at(&self.tmp)?;
        drop(file);
        fs::rename(&self.tmp, &self.target).at(&self.target)?;
        fsync_dir(parent(&self.target))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            // Not committed: the temporary is garbage. Failure to remove it
            // is harmless; open() sweeps leftovers.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `target` atomically (see module docs).
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Removes a file and fsyncs its directory; a missing file is not an error.
pub fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => fsync_dir(parent(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::Error::io(path, e)),
    }
}

/// Deletes `*.tmp` files left in `dir` by a crash mid-write. Returns their names.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        if path.to_string_lossy().ends_with(TMP_SUFFIX) {
            fs::remove_file(&path).at(&path)?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_and_drop_discards() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        write_atomic(&target, b"one").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"one");

        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"two").unwrap();
        let tmp = f.tmp_path().to_path_buf();
        assert!(tmp.exists());
        drop(f);
        assert!(!tmp.exists(), "uncommitted temp is removed");
        assert_eq!(fs::read(&target).unwrap(), b"one", "target untouched");
    }

    #[test]
    fn stale_temps_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("seg.tmp"), b"x").unwrap();
        fs::write(dir.path().join("keep"), b"x").unwrap();
        let removed = remove_stale_temps(dir.path()).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(dir.path().join("keep").exists());
    }
}
