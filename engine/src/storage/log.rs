//! Append-only record logs with a checksum per record.
//!
//! ```text
//! header (64 bytes, see super::format; its last 8 bytes are the xxh3-64
//!         of the first 56, so the header is checked like the records)
//! record*: payload length (u32 LE) | checksum (u32 LE) | payload
//! ```
//!
//! The checksum is the low 32 bits of xxh3-64 over the length bytes and the
//! payload, so a damaged length is caught too. Appends are buffered; only
//! [`RecordLog::sync`] makes them durable. A crash can therefore leave a
//! torn last record: [`RecordLog::open`] replays records up to the first one
//! that is incomplete or fails its checksum, truncates the file there and
//! reports how much it dropped.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::format::{self, FIELDS_LEN, FileKind, HEADER_LEN};
use crate::error::{Error, IoContext, Result};

/// Largest accepted record payload (guards replay against a garbage length).
pub const MAX_RECORD: usize = 64 << 20;

/// Header fields a log may use; the last 8 bytes of the header hold its checksum.
pub const LOG_FIELDS_LEN: usize = FIELDS_LEN - 8;

/// A log header: the common header with a checksum in its last 8 bytes.
///
/// # Panics
/// If `fields` uses its last 8 bytes (they belong to the checksum).
fn log_header(kind: FileKind, fields: &[u8; FIELDS_LEN]) -> [u8; HEADER_LEN] {
    assert!(
        fields[LOG_FIELDS_LEN..].iter().all(|&b| b == 0),
        "log header fields too long"
    );
    let mut header = format::encode_header(kind, fields);
    let sum = format::checksum(&header[..HEADER_LEN - 8]);
    header[HEADER_LEN - 8..].copy_from_slice(&sum.to_le_bytes());
    header
}

/// An open log, positioned for appends.
#[derive(Debug)]
pub struct RecordLog {
    path: PathBuf,
    writer: BufWriter<File>,
    len: u64,
}

/// What [`RecordLog::open`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Records replayed.
    pub records: u64,
    /// Bytes dropped from the end (a torn or damaged tail); 0 for a clean log.
    pub dropped_bytes: u64,
    /// Why the tail was dropped, if it was.
    pub dropped_reason: Option<String>,
}

impl RecordLog {
    /// Creates a new, empty log (fails if `path` exists) and makes it durable.
    pub fn create(path: &Path, kind: FileKind, fields: &[u8; FIELDS_LEN]) -> Result<RecordLog> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .at(path)?;
        file.write_all(&log_header(kind, fields)).at(path)?;
        file.sync_all().at(path)?;
        super::fs::fsync_dir(path.parent().unwrap_or(Path::new(".")))?;
        Ok(RecordLog {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 16, file),
            len: HEADER_LEN as u64,
        })
    }

    /// Opens an existing log, calls `each` with every intact record, drops a
    /// damaged tail, and returns the log ready for appends with the header
    /// fields and a replay report.
    pub fn open(
        path: &Path,
        kind: FileKind,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<(RecordLog, [u8; FIELDS_LEN], Replay)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .at(path)?;
        let file_len = file.metadata().at(path)?.len();
        let mut reader = BufReader::with_capacity(1 << 16, &mut file);
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact(&mut header).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupted(path, format!("{file_len} bytes: header truncated"))
            } else {
                Error::io(path, e)
            }
        })?;
        let fields = format::decode_header(&header, kind, path)?;
        let stored = u64::from_le_bytes(header[HEADER_LEN - 8..].try_into().expect("8 bytes"));
        if stored != format::checksum(&header[..HEADER_LEN - 8]) {
            return Err(Error::corrupted(path, "log header fails its checksum"));
        }

        let mut good = HEADER_LEN as u64;
        let mut replay = Replay::default();
        let mut payload = Vec::new();
        loop {
            let mut frame = [0u8; 8];
            match read_full(&mut reader, &mut frame).at(path)? {
                0 => break,
                8 => {}
                n => {
                    replay.dropped_reason = Some(format!("record frame torn after {n} bytes"));
                    break;
                }
            }
            let len = u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes")) as usize;
            let stored = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
            if len > MAX_RECORD || good + 8 + len as u64 > file_len {
                replay.dropped_reason = Some(format!(
                    "record of {len} bytes runs past the end of the file"
                ));
                break;
            }
            payload.resize(len, 0);
            reader.read_exact(&mut payload).at(path)?;
            if record_checksum(&frame[0..4], &payload) != stored {
                replay.dropped_reason = Some(format!("record at offset {good} fails its checksum"));
                break;
            }
            each(&payload)?;
            good += 8 + len as u64;
            replay.records += 1;
        }
        drop(reader);
        if good < file_len {
            replay.dropped_bytes = file_len - good;
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = replay.dropped_bytes,
                reason = replay.dropped_reason.as_deref().unwrap_or(""),
                "truncating damaged log tail"
            );
            file.set_len(good).at(path)?;
            file.sync_all().at(path)?;
        }
        file.seek(SeekFrom::Start(good)).at(path)?;
        let log = RecordLog {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 16, file),
            len: good,
        };
        Ok((log, fields, replay))
    }

    /// Atomically replaces the log at `path` with one holding `records`
    /// (written to a temporary, fsynced, renamed), and opens it for appends.
    pub fn rewrite<'r>(
        path: &Path,
        kind: FileKind,
        fields: &[u8; FIELDS_LEN],
        records: impl IntoIterator<Item = &'r [u8]>,
    ) -> Result<RecordLog> {
        let mut file = super::fs::AtomicFile::create(path)?;
        file.write_all(&log_header(kind, fields))?;
        for payload in records {
            assert!(payload.len() <= MAX_RECORD, "record too large");
            let len = (payload.len() as u32).to_le_bytes();
            file.write_all(&len)?;
            file.write_all(&record_checksum(&len, payload).to_le_bytes())?;
            file.write_all(payload)?;
        }
        file.commit()?;
        let (log, _, _) = RecordLog::open(path, kind, |_| Ok(()))?;
        Ok(log)
    }

    /// Appends one record (buffered; see [`RecordLog::sync`]).
    ///
    /// # Panics
    /// If the payload is larger than [`MAX_RECORD`].
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        assert!(payload.len() <= MAX_RECORD, "record too large");
        let len = (payload.len() as u32).to_le_bytes();
        let sum = record_checksum(&len, payload).to_le_bytes();
        let w = &mut self.writer;
        w.write_all(&len)
            .and_then(|()| w.write_all(&sum))
            .and_then(|()| w.write_all(payload))
            .at(&self.path)?;
        self.len += 8 + payload.len() as u64;
        Ok(())
    }

    /// Writes buffered records and fsyncs them.
    pub fn sync(&mut self) -> Result<()> {
        self.writer.flush().at(&self.path)?;
        self.writer.get_ref().sync_data().at(&self.path)
    }

    /// Writes buffered records to the OS without fsync.
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush().at(&self.path)
    }

    /// Current length in bytes, including buffered records.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log holds no records.
    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN as u64
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn record_checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut c = format::Checksum::new();
    c.update(len);
    c.update(payload);
    c.finish() as u32
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::format::Fields;

    fn replay(path: &Path) -> (Vec<Vec<u8>>, Replay) {
        let mut out = Vec::new();
        let (_, _, r) = RecordLog::open(path, FileKind::Tombstones, |p| {
            out.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        (out, r)
    }

    #[test]
    fn records_survive_reopen_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log =
            RecordLog::create(&path, FileKind::Tombstones, &Fields::default().finish()).unwrap();
        log.append(b"a").unwrap();
        log.append(&[7u8; 1000]).unwrap();
        log.sync().unwrap();
        drop(log);
        let (recs, r) = replay(&path);
        assert_eq!(recs, vec![b"a".to_vec(), vec![7u8; 1000]]);
        assert_eq!(r.dropped_bytes, 0);

        let (mut log, _, _) = RecordLog::open(&path, FileKind::Tombstones, |_| Ok(())).unwrap();
        log.append(b"c").unwrap();
        log.sync().unwrap();
        drop(log);
        assert_eq!(replay(&path).0.len(), 3);
    }

    #[test]
    fn torn_and_damaged_tails_are_dropped_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log =
            RecordLog::create(&path, FileKind::Tombstones, &Fields::default().finish()).unwrap();
        for i in 0..5u8 {
            log.append(&[i; 10]).unwrap();
        }
        log.sync().unwrap();
        drop(log);
        let full = std::fs::read(&path).unwrap();
        for cut in 1..=(5 * 18) {
            std::fs::write(&path, &full[..full.len() - cut]).unwrap();
            let (recs, r) = replay(&path);
            let whole = (5 * 18 - cut) / 18;
            assert_eq!(recs.len(), whole, "cut {cut}");
            assert_eq!(r.dropped_bytes as usize, (5 * 18 - cut) % 18, "cut {cut}");
            // The file was truncated to the last good record.
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                HEADER_LEN + whole * 18
            );
        }
        // A flipped payload byte in the last record drops that record only.
        let mut bad = full.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let (recs, r) = replay(&path);
        assert_eq!(recs.len(), 4);
        assert!(r.dropped_reason.unwrap().contains("checksum"));
    }

    #[test]
    fn rewrite_replaces_the_records_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let fields = Fields::default().finish();
        let mut log = RecordLog::create(&path, FileKind::Tombstones, &fields).unwrap();
        log.append(b"old").unwrap();
        log.sync().unwrap();
        let mut log =
            RecordLog::rewrite(&path, FileKind::Tombstones, &fields, [&b"a"[..], b"bb"]).unwrap();
        log.append(b"ccc").unwrap();
        log.sync().unwrap();
        drop(log);
        assert_eq!(
            replay(&path).0,
            vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
        );
    }

    #[test]
    fn every_header_byte_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let fields = Fields::default().u32(7).finish();
        drop(RecordLog::create(&path, FileKind::Tombstones, &fields).unwrap());
        let good = std::fs::read(&path).unwrap();
        for byte in 0..HEADER_LEN {
            let mut bad = good.clone();
            bad[byte] ^= 0x04;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                RecordLog::open(&path, FileKind::Tombstones, |_| Ok(())).is_err(),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn a_truncated_header_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"BIOMATCH").unwrap();
        let err = RecordLog::open(&path, FileKind::Tombstones, |_| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    }
}
