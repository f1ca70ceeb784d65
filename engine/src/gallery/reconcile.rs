//! Bringing a collection's index in line with the catalog at open.
//!
//! The catalog is the truth; an index may lag it (rows committed but not
//! yet appended when the process died, tombstones not yet durable) or be
//! damaged. At open, per collection:
//!
//! 1. open the index, rebuilding damaged segments from the catalog
//!    ([`FlatIndex::open_with_repair`]); if the index cannot be opened that
//!    way (missing, damaged manifest or tombstones, other settings), build
//!    it anew from the catalog;
//! 2. append the catalog's templates above the index's largest id;
//! 3. apply the catalog's pending deletions;
//! 4. sync, after which the caller clears the pending deletions.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::index::flat::{FlatConfig, FlatIndex, OpenOptions, Repair, RowSink, RowSource};
use crate::storage::catalog::{Catalog, PendingDeletion};

use super::{CollectionInfo, GalleryOptions};

/// What opening one collection's index found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectionReport {
    /// Collection name.
    pub collection: String,
    /// Why the index was built anew from the catalog, if it was.
    pub rebuilt: Option<String>,
    /// Files rebuilt from the catalog.
    pub repaired: Vec<Repair>,
    /// Bytes dropped from the index's logs as torn or damaged tails.
    pub log_dropped_bytes: u64,
    /// Templates appended from the catalog (missing from the index).
    pub caught_up: usize,
    /// Deletions from the catalog the index had not applied yet.
    pub deletions_applied: usize,
}

impl CollectionReport {
    /// Whether the index was not already in line with the catalog.
    pub fn changed_anything(&self) -> bool {
        self.rebuilt.is_some()
            || !self.repaired.is_empty()
            || self.log_dropped_bytes > 0
            || self.caught_up > 0
            || self.deletions_applied > 0
    }
}

/// Rows per append while catching up.
const CATCH_UP_BATCH: usize = 4096;

/// The catalog's templates of one collection, as index rows labelled with
/// their subject.
struct CatalogRows<'a> {
    catalog: &'a Catalog,
    collection: u64,
    dim: usize,
}

impl RowSource for CatalogRows<'_> {
    fn rows(&mut self, first: u64, last: u64, row: &mut RowSink<'_>) -> Result<()> {
        self.catalog
            .for_each_template(self.collection, first, last, self.dim, |id, subject, v| {
                row(id, subject, v)
            })
    }
}

/// Directory of a collection's index.
pub(crate) fn index_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join("indexes").join(name)
}

pub(crate) fn index_config(info: &CollectionInfo, options: &GalleryOptions) -> FlatConfig {
    FlatConfig::new(info.spec.dim, info.spec.dtype, info.spec.metric)
        .with_segment_rows(options.segment_rows)
}

/// Opens (repairing, rebuilding, catching up) the index of `info`.
pub(crate) fn open_index(
    dir: &Path,
    catalog: &Catalog,
    info: &CollectionInfo,
    options: &GalleryOptions,
    pending: &[PendingDeletion],
) -> Result<(FlatIndex, CollectionReport)> {
    let path = index_dir(dir, &info.spec.name);
    let config = index_config(info, options);
    let mut report = CollectionReport {
        collection: info.spec.name.clone(),
        ..CollectionReport::default()
    };
    let open_options = OpenOptions {
        verify_checksums: options.verify_checksums,
    };
    let mut source = CatalogRows {
        catalog,
        collection: info.id,
        dim: info.spec.dim,
    };
    let opened = if FlatIndex::exists(&path) {
        FlatIndex::open_with_repair(&path, open_options, &mut source).and_then(|index| {
            let stored = index.config();
            if (stored.dim, stored.dtype, stored.metric)
                == (config.dim, config.dtype, config.metric)
            {
                Ok(index)
            } else {
                Err(Error::ConfigMismatch {
                    path: path.clone(),
                    field: "dim, dtype, metric",
                    stored: format!("{}, {}, {}", stored.dim, stored.dtype, stored.metric),
                    requested: format!("{}, {}, {}", config.dim, config.dtype, config.metric),
                })
            }
        })
    } else {
        Err(Error::io(
            &path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ))
    };
    let mut index = match opened {
        Ok(index) => {
            let opened = index.open_report();
            report.repaired = opened.repaired.clone();
            report.log_dropped_bytes =
                opened.vector_log.dropped_bytes + opened.tombstone_log.dropped_bytes;
            index
        }
        Err(e) => {
            if FlatIndex::exists(&path) || path.exists() {
                tracing::warn!(path = %path.display(), reason = %e, "rebuilding the index from the catalog");
                report.rebuilt = Some(e.to_string());
                std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            }
            FlatIndex::create(&path, config)?
        }
    };

    report.caught_up = catch_up(&mut index, catalog, info)?;
    for p in pending.iter().filter(|p| p.collection_id == info.id) {
        if index.snapshot().contains(p.template_id) {
            index.delete(p.template_id)?;
            report.deletions_applied += 1;
        }
    }
    index.sync()?;
    if report.changed_anything() {
        tracing::info!(
            collection = %info.spec.name,
            rebuilt = report.rebuilt.is_some(),
            repaired = report.repaired.len(),
            log_dropped_bytes = report.log_dropped_bytes,
            caught_up = report.caught_up,
            deletions_applied = report.deletions_applied,
            "index reconciled with the catalog"
        );
    }
    Ok((index, report))
}

/// Appends the catalog's templates above the index's largest id.
fn catch_up(index: &mut FlatIndex, catalog: &Catalog, info: &CollectionInfo) -> Result<usize> {
    let after = index.last_id().map_or(0, |l| l + 1);
    let dim = info.spec.dim;
    let mut ids = Vec::with_capacity(CATCH_UP_BATCH);
    let mut labels = Vec::with_capacity(CATCH_UP_BATCH);
    let mut vectors = Vec::with_capacity(CATCH_UP_BATCH * dim);
    let mut total = 0;
    catalog.for_each_template(info.id, after, u64::MAX, dim, |id, subject, v| {
        ids.push(id);
        labels.push(subject);
        vectors.extend_from_slice(v);
        if ids.len() == CATCH_UP_BATCH {
            index.append_labeled(&ids, &labels, &vectors)?;
            total += ids.len();
            ids.clear();
            labels.clear();
            vectors.clear();
        }
        Ok(())
    })?;
    index.append_labeled(&ids, &labels, &vectors)?;
    Ok(total + ids.len())
}
