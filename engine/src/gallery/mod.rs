//! The gallery: subjects and their templates, durable in the catalog
//! ([`crate::storage::catalog`]), searchable through one flat index per
//! collection derived from it.
//!
//! # Durability
//!
//! A write commits to the catalog first (WAL, `synchronous=FULL`); only then
//! does it touch the indexes, and the call returns after both. A crash after
//! the commit loses nothing: at the next open every index catches up with
//! the catalog (`reconcile`). Damaged index files are rebuilt from the
//! catalog; the catalog is never changed by that. Deletions stay listed in
//! the catalog until compaction has removed their rows from the indexes,
//! and every open applies them again, so a damaged tombstone log cannot
//! bring a deleted template back.
//!
//! # Concurrency
//!
//! One writer at a time (a mutex); any number of readers. After each write
//! the writer publishes a new [`GallerySnapshot`] — every collection's
//! index snapshot at once — with one atomic pointer swap. A search uses
//! one snapshot from start to end, so it sees a prefix of the committed
//! writes and never part of a subject (say its face but not its fingers).
//!
//! # Layout of a gallery directory
//!
//! ```text
//! catalog.sqlite (+ -wal, -shm)   the source of truth
//! indexes/<collection>/           one flat index per collection
//! gallery.lock                    held by the process that has it open
//! ```

mod fingers;
mod reconcile;
mod search;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::error::{Error, Result};
use crate::index::flat::{CompactReport, DEFAULT_SEGMENT_ROWS, FlatIndex, FlatSnapshot};
use crate::storage::catalog::{Audit, Catalog, NewTemplate};

pub use fingers::{
    FingerMatch, FingerScore, MODEL_ID as MINUTIAE_MODEL_ID,
    MODEL_VERSION as MINUTIAE_MODEL_VERSION, PreparedFinger, is_minutiae, minutiae_collection,
};
pub use reconcile::CollectionReport;
pub use search::{
    CollectionCheck, CollectionScore, Probe, Search, SubjectHit, TemplateScore, Verification,
};
pub use types::*;

/// The lock file an open gallery holds (see [`Gallery::open`]).
pub const LOCK_FILE: &str = "gallery.lock";

/// Settings of an open gallery.
#[derive(Clone, Debug)]
pub struct GalleryOptions {
    /// Read every index segment completely at open to check its checksum.
    pub verify_checksums: bool,
    /// Rows per sealed index segment.
    pub segment_rows: usize,
}

impl Default for GalleryOptions {
    fn default() -> Self {
        GalleryOptions {
            verify_checksums: true,
            segment_rows: DEFAULT_SEGMENT_ROWS,
        }
    }
}

/// What [`Gallery::open`] found and did.
#[derive(Clone, Debug, Default)]
pub struct GalleryOpenReport {
    /// One report per collection.
    pub collections: Vec<CollectionReport>,
    /// Deletions listed in the catalog (all applied again).
    pub pending_deletions: usize,
}

/// An immutable view of the whole gallery: every collection's index at the
/// same moment.
#[derive(Debug)]
pub struct GallerySnapshot {
    collections: Vec<(CollectionInfo, Arc<FlatSnapshot>)>,
    subjects: u64,
}

impl GallerySnapshot {
    /// The collections, in creation order.
    pub fn collections(&self) -> impl Iterator<Item = &CollectionInfo> {
        self.collections.iter().map(|(info, _)| info)
    }

    /// A collection and its index snapshot.
    pub fn collection(&self, name: &str) -> Result<(&CollectionInfo, &Arc<FlatSnapshot>)> {
        self.collections
            .iter()
            .find(|(info, _)| info.spec.name == name)
            .map(|(info, index)| (info, index))
            .ok_or_else(|| Error::UnknownCollection {
                name: name.to_string(),
            })
    }

    /// Enrolled subjects and templates per collection.
    pub fn counts(&self) -> GalleryCounts {
        GalleryCounts {
            subjects: self.subjects,
            templates: self
                .collections
                .iter()
                .map(|(info, index)| (info.spec.name.clone(), index.len() as u64))
                .collect(),
        }
    }
}

/// Sizes of a gallery.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GalleryCounts {
    /// Enrolled subjects.
    pub subjects: u64,
    /// Templates per collection.
    pub templates: Vec<(String, u64)>,
}

struct Collection {
    info: CollectionInfo,
    index: FlatIndex,
}

/// Rows for one index append: template ids, subject labels, vectors.
#[derive(Default)]
struct NewRows {
    ids: Vec<u64>,
    labels: Vec<u64>,
    vectors: Vec<f32>,
}

struct Writer {
    catalog: Catalog,
    collections: Vec<Collection>,
    subjects: u64,
    /// Set when an index write failed after its catalog commit: the
    /// catalog holds the write, the index may not, and only a reopen
    /// (which catches up) restores agreement.
    failed: Option<String>,
}

/// Read-only catalog connections shared by searches.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Catalog>>,
}

impl Readers {
    fn with<T>(&self, f: impl FnOnce(&Catalog) -> Result<T>) -> Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let catalog = match idle {
            Some(c) => c,
            None => Catalog::open_read_only(&self.path)?,
        };
        let result = f(&catalog);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(catalog);
        result
    }
}

/// A gallery directory, open. `Send + Sync`: share it behind an `Arc`.
pub struct Gallery {
    dir: PathBuf,
    options: GalleryOptions,
    writer: Mutex<Writer>,
    published: ArcSwap<GallerySnapshot>,
    readers: Readers,
    report: GalleryOpenReport,
    fingers: fingers::Fingers,
    /// Holds the directory's exclusive lock while the gallery is open.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery")
            .field("dir", &self.dir)
            .field("counts", &self.snapshot().counts())
            .finish_non_exhaustive()
    }
}

impl Gallery {
    /// Opens (creating if needed) the gallery in `dir` and reconciles every
    /// index with the catalog (module docs).
    ///
    /// One process at a time: the open gallery holds an exclusive lock on
    /// `dir/gallery.lock` (released when it is dropped or the process
    /// dies); a second open while it is held is an
    /// [`Error::InvalidArgument`] naming the directory.
    pub fn open(dir: &Path, options: GalleryOptions) -> Result<Gallery> {
        std::fs::create_dir_all(dir.join("indexes")).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::invalid(
                    "gallery",
                    format!(
                        "{} is in use by another process or handle (it holds {}); stop it first, or use its API",
                        dir.display(),
                        lock_path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let catalog_path = dir.join("catalog.sqlite");
        let catalog = Catalog::open(&catalog_path)?;
        let pending = catalog.pending_deletions()?;
        let mut report = GalleryOpenReport {
            pending_deletions: pending.len(),
            ..GalleryOpenReport::default()
        };
        let mut collections = Vec::new();
        let fingers = fingers::Fingers::new();
        for info in catalog.collections()? {
            if is_minutiae(&info.spec) {
                fingers.load(&catalog, info.id)?;
            }
            let (index, collection_report) =
                reconcile::open_index(dir, &catalog, &info, &options, &pending)?;
            report.collections.push(collection_report);
            collections.push(Collection { info, index });
        }
        let subjects = catalog.subject_count()?;
        let mut writer = Writer {
            catalog,
            collections,
            subjects,
            failed: None,
        };
        // Deletions whose rows no index stores any more (compacted away, or
        // an index rebuilt from the catalog) need not be listed.
        writer.forget_removed_deletions()?;
        let gallery = Gallery {
            dir: dir.to_path_buf(),
            options,
            published: ArcSwap::from_pointee(writer.snapshot()),
            writer: Mutex::new(writer),
            readers: Readers {
                path: catalog_path,
                idle: Mutex::new(Vec::new()),
            },
            report,
            fingers,
            _lock: lock,
        };
        Ok(gallery)
    }

    /// What [`Gallery::open`] found and did.
    pub fn open_report(&self) -> &GalleryOpenReport {
        &self.report
    }

    /// The gallery directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> Arc<GallerySnapshot> {
        self.published.load_full()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Writer>> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match &writer.failed {
            None => Ok(writer),
            Some(why) => Err(Error::invalid(
                "gallery",
                format!(
                    "an index write failed after its catalog commit ({why}); reopen the gallery to catch up"
                ),
            )),
        }
    }

    fn publish(&self, writer: &Writer) {
        self.published.store(Arc::new(writer.snapshot()));
    }

    /// Returns the collection `spec.name`, creating it (and its index) if
    /// it does not exist. An existing collection must have the same
    /// definition ([`Error::CollectionConflict`] otherwise).
    pub fn ensure_collection(&self, spec: &CollectionSpec) -> Result<CollectionInfo> {
        spec.validate()?;
        let mut writer = self.lock()?;
        if let Some(c) = writer
            .collections
            .iter()
            .find(|c| c.info.spec.name == spec.name)
        {
            return if &c.info.spec == spec {
                Ok(c.info.clone())
            } else {
                Err(Error::CollectionConflict {
                    name: spec.name.clone(),
                    reason: format!("it exists as {:?}; asked for {spec:?}", c.info.spec),
                })
            };
        }
        let info = writer.catalog.insert_collection(spec)?;
        let path = reconcile::index_dir(&self.dir, &spec.name);
        if path.exists() {
            // Left by a collection whose catalog row never committed.
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        let index = FlatIndex::create(&path, reconcile::index_config(&info, &self.options))?;
        writer.collections.push(Collection {
            info: info.clone(),
            index,
        });
        self.publish(&writer);
        Ok(info)
    }

    /// Enrolls one subject with all its templates. See [`Gallery::enroll_batch`].
    pub fn enroll<'a>(
        &self,
        enrollment: &Enrollment,
        actor: impl Into<Actor<'a>>,
    ) -> Result<EnrollReceipt> {
        Ok(self
            .enroll_batch(std::slice::from_ref(enrollment), actor)?
            .remove(0))
    }

    /// Enrolls subjects with all their templates in one durable catalog
    /// transaction — all of them or none — then makes them searchable.
    ///
    /// Errors, before anything is stored: an invalid subject id, no
    /// templates, an unknown collection, a position of the wrong modality,
    /// a finger position given twice, an invalid vector (dimension, NaN,
    /// zero for cosine and inner product), a subject id already enrolled or
    /// repeated in the batch ([`Error::SubjectExists`]).
    pub fn enroll_batch<'a>(
        &self,
        batch: &[Enrollment],
        actor: impl Into<Actor<'a>>,
    ) -> Result<Vec<EnrollReceipt>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut writer = self.lock()?;
        let mut prepared = Vec::with_capacity(batch.len());
        let rows: Vec<(String, Vec<NewTemplate>)> = batch
            .iter()
            .map(|e| {
                let (rows, fingers) = writer.resolve(e, &self.fingers)?;
                prepared.push(fingers);
                Ok((e.subject.clone(), rows))
            })
            .collect::<Result<_>>()?;
        let audit = audit(
            actor.into(),
            "enroll",
            batch.iter().map(|e| e.subject.clone()).collect(),
        );
        let receipts = writer.catalog.enroll(&rows, &audit)?;
        for ((receipt, (_, templates)), fingers) in receipts.iter().zip(&rows).zip(&prepared) {
            self.cache_fingers(receipt, templates, fingers);
        }
        let result = writer.index_new(&rows, &receipts);
        writer.subjects += receipts.len() as u64;
        self.publish(&writer);
        result.map(|()| receipts)
    }

    /// Replaces all templates of an enrolled subject, durably and at once.
    pub fn replace<'a>(
        &self,
        enrollment: &Enrollment,
        actor: impl Into<Actor<'a>>,
    ) -> Result<EnrollReceipt> {
        let mut writer = self.lock()?;
        let (templates, fingers) = writer.resolve(enrollment, &self.fingers)?;
        let audit = audit(actor.into(), "replace", vec![enrollment.subject.clone()]);
        let replaced = writer
            .catalog
            .replace(&enrollment.subject, &templates, &audit)?;
        for &(template, collection) in &replaced.removed {
            self.fingers.remove(collection, template);
        }
        self.cache_fingers(&replaced.receipt, &templates, &fingers);
        let rows = [(enrollment.subject.clone(), templates)];
        let result = writer
            .unindex(&replaced.removed)
            .and_then(|()| writer.index_new(&rows, std::slice::from_ref(&replaced.receipt)));
        self.publish(&writer);
        result.map(|()| replaced.receipt)
    }

    /// Deletes a subject and all its templates. Searches stop finding it at
    /// once; index space is reclaimed by [`Gallery::compact`].
    pub fn delete<'a>(&self, subject: &str, actor: impl Into<Actor<'a>>) -> Result<()> {
        let mut writer = self.lock()?;
        let removed = writer.catalog.delete(
            subject,
            &audit(actor.into(), "delete", vec![subject.to_string()]),
        )?;
        writer.subjects -= 1;
        for &(template, collection) in &removed {
            self.fingers.remove(collection, template);
        }
        let result = writer.unindex(&removed);
        self.publish(&writer);
        result
    }

    /// Adds a committed subject's prepared finger templates to the
    /// in-memory table.
    fn cache_fingers(
        &self,
        receipt: &EnrollReceipt,
        templates: &[NewTemplate],
        prepared: &[Option<PreparedFinger>],
    ) {
        for ((t, &id), p) in templates.iter().zip(&receipt.template_ids).zip(prepared) {
            if let Some(p) = p {
                self.fingers.add(t.collection_id, id, receipt.subject_id, p);
            }
        }
    }

    /// Rewrites index segments whose deleted rows make up at least
    /// `min_deleted_fraction` of them, then forgets the catalog's deletions
    /// whose rows are gone.
    pub fn compact(&self, min_deleted_fraction: f64) -> Result<Vec<(String, CompactReport)>> {
        let mut writer = self.lock()?;
        let mut reports = Vec::new();
        let mut result = Ok(());
        for c in &mut writer.collections {
            match c.index.compact(min_deleted_fraction) {
                Ok(r) => reports.push((c.info.spec.name.clone(), r)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let result = result
            .and_then(|()| writer.sync_indexes())
            .and_then(|()| writer.forget_removed_deletions());
        if let Err(e) = &result {
            writer.failed = Some(e.to_string());
        }
        self.publish(&writer);
        result.map(|()| reports)
    }

    /// Makes every index write durable (a clean shutdown calls this; after
    /// a crash the next open catches up from the catalog instead).
    pub fn sync(&self) -> Result<()> {
        self.lock()?.sync_indexes()
    }

    /// A subject with its templates (exactly as enrolled), or `None`.
    pub fn get(&self, subject: &str) -> Result<Option<SubjectRecord>> {
        self.readers.with(|c| c.subject(subject))
    }

    /// Appends an audit entry (for reads: verify, identify).
    pub fn audit(&self, entry: &Audit) -> Result<()> {
        self.lock()?.catalog.append_audit(entry)
    }

    /// The most recent audit entries, newest first.
    pub fn audit_entries(&self, limit: usize) -> Result<Vec<crate::storage::catalog::AuditRecord>> {
        self.readers.with(|c| c.audit_entries(limit))
    }
}

fn audit(actor: Actor<'_>, operation: &str, subjects: Vec<String>) -> Audit {
    Audit {
        actor: actor.name.to_string(),
        operation: operation.to_string(),
        subjects,
        outcome: "ok".to_string(),
        request_id: actor.request_id.map(str::to_string),
    }
}

/// Who asks for a write, recorded in its audit row: a name (an API key
/// id, `cli`, …) and, over the API, the request id. A plain `&str` is a
/// name without a request id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actor<'a> {
    /// Who.
    pub name: &'a str,
    /// The API request, if any.
    pub request_id: Option<&'a str>,
}

impl<'a> From<&'a str> for Actor<'a> {
    fn from(name: &'a str) -> Self {
        Actor {
            name,
            request_id: None,
        }
    }
}

impl Writer {
    fn snapshot(&self) -> GallerySnapshot {
        GallerySnapshot {
            collections: self
                .collections
                .iter()
                .map(|c| (c.info.clone(), c.index.snapshot()))
                .collect(),
            subjects: self.subjects,
        }
    }

    fn collection(&self, name: &str) -> Result<&Collection> {
        self.collections
            .iter()
            .find(|c| c.info.spec.name == name)
            .ok_or_else(|| Error::UnknownCollection {
                name: name.to_string(),
            })
    }

    /// Validates an enrollment completely (nothing may fail after the
    /// catalog commit for reasons of input) and resolves its collections;
    /// finger records of minutiae collections come back prepared.
    fn resolve(
        &self,
        e: &Enrollment,
        fingers: &fingers::Fingers,
    ) -> Result<(Vec<NewTemplate>, Vec<Option<PreparedFinger>>)> {
        validate_subject(&e.subject)?;
        if e.templates.is_empty() {
            return Err(Error::invalid(
                "templates",
                format!("subject `{}` has none", e.subject),
            ));
        }
        let mut positions = Vec::new();
        let mut buf = Vec::new();
        let mut prepared = Vec::with_capacity(e.templates.len());
        let rows = e
            .templates
            .iter()
            .map(|t| {
                let c = self.collection(&t.collection)?;
                if t.position.modality() != c.info.spec.modality {
                    return Err(Error::invalid(
                        "position",
                        format!(
                            "{} template in {} collection `{}`",
                            t.position, c.info.spec.modality, t.collection
                        ),
                    ));
                }
                if t.position.modality() == Modality::Finger
                    && t.position != Position::UnknownFinger
                {
                    if positions.contains(&(c.info.id, t.position)) {
                        return Err(Error::invalid(
                            "position",
                            format!("{} given twice for subject `{}`", t.position, e.subject),
                        ));
                    }
                    positions.push((c.info.id, t.position));
                }
                if t.quality.is_some_and(|q| !q.is_finite()) {
                    return Err(Error::invalid("quality", "not a finite number"));
                }
                let minutiae = is_minutiae(&c.info.spec);
                let (vector, finger) = match (&t.record, minutiae) {
                    (Some(record), true) => {
                        if !t.vector.is_empty() {
                            return Err(Error::invalid(
                                "vector",
                                format!(
                                    "collection `{}` computes vectors from records: leave `vector` empty",
                                    t.collection
                                ),
                            ));
                        }
                        let p = fingers.prepare(record, t.position)?;
                        (p.vector.clone(), Some(p))
                    }
                    (None, true) => {
                        return Err(Error::invalid(
                            "record",
                            format!("collection `{}` needs a minutiae record", t.collection),
                        ));
                    }
                    (Some(_), false) => {
                        return Err(Error::invalid(
                            "record",
                            format!("collection `{}` takes vectors, not records", t.collection),
                        ));
                    }
                    (None, false) => (t.vector.clone(), None),
                };
                crate::index::flat::prepare(&c.index.config(), &vector, &mut buf, true)?;
                prepared.push(finger);
                Ok(NewTemplate {
                    collection_id: c.info.id,
                    position: t.position,
                    quality: t.quality,
                    vector,
                    record: t.record.clone(),
                })
            })
            .collect::<Result<_>>()?;
        Ok((rows, prepared))
    }

    /// Appends committed templates to their indexes, one append per collection.
    fn index_new(
        &mut self,
        rows: &[(String, Vec<NewTemplate>)],
        receipts: &[EnrollReceipt],
    ) -> Result<()> {
        let mut per: HashMap<u64, NewRows> = HashMap::new();
        let mut per_subject_max: HashMap<u64, usize> = HashMap::new();
        for ((_, templates), receipt) in rows.iter().zip(receipts) {
            let mut counts: HashMap<u64, usize> = HashMap::new();
            for (t, &id) in templates.iter().zip(&receipt.template_ids) {
                let rows = per.entry(t.collection_id).or_default();
                rows.ids.push(id);
                rows.labels.push(receipt.subject_id);
                rows.vectors.extend_from_slice(&t.vector);
                *counts.entry(t.collection_id).or_default() += 1;
            }
            for (c, n) in counts {
                let m = per_subject_max.entry(c).or_default();
                *m = (*m).max(n);
            }
        }
        for c in &mut self.collections {
            if let Some(n) = per_subject_max.get(&c.info.id) {
                c.info.max_per_subject = c.info.max_per_subject.max(*n);
            }
            if let Some(rows) = per.remove(&c.info.id)
                && let Err(e) = c
                    .index
                    .append_labeled(&rows.ids, &rows.labels, &rows.vectors)
            {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Tombstones removed templates in their indexes.
    fn unindex(&mut self, removed: &[(u64, u64)]) -> Result<()> {
        for &(template, collection) in removed {
            let Some(c) = self
                .collections
                .iter_mut()
                .find(|c| c.info.id == collection)
            else {
                continue;
            };
            match c.index.delete(template) {
                // Not in the index (its append was lost): nothing to hide.
                Ok(()) | Err(Error::UnknownId { .. }) => {}
                Err(e) => {
                    self.failed = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn sync_indexes(&mut self) -> Result<()> {
        for c in &mut self.collections {
            c.index.sync()?;
        }
        Ok(())
    }

    /// Clears the catalog's pending deletions whose rows no index stores.
    fn forget_removed_deletions(&mut self) -> Result<()> {
        let gone: Vec<u64> = self
            .catalog
            .pending_deletions()?
            .into_iter()
            .filter(|p| {
                self.collections
                    .iter()
                    .find(|c| c.info.id == p.collection_id)
                    .is_none_or(|c| !c.index.snapshot().stores(p.template_id))
            })
            .map(|p| p.seq)
            .collect();
        self.catalog.clear_pending_deletions(&gone)
    }
}

#[cfg(test)]
mod tests;
