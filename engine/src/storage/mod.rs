//! On-disk storage: crash-safe file replacement ([`fs`]), the shared file
//! envelope ([`format`](mod@format)), memory maps ([`mmap`]), append-only record logs
//! ([`log`]), sealed vector segments ([`segment`]), the SQLite catalog
//! ([`catalog`]) and the jobs it checkpoints ([`jobs`]).
//!
//! Every file carries a magic, a kind, a format version and checksums;
//! damage is reported as [`crate::Error::Corrupted`] with the path, never
//! read as data.

pub mod catalog;
pub mod format;
pub mod fs;
pub mod jobs;
pub mod log;
pub mod mmap;
pub mod segment;
