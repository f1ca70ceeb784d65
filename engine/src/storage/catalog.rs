//! The catalog: the gallery's source of truth, in SQLite.
//!
//! One database file holds collections, subjects, templates (their
//! embeddings as little-endian `f32` blobs), deletions not yet applied to
//! the indexes, the audit log and jobs. It runs in WAL mode with
//! `synchronous=FULL`: a committed transaction is on disk before `commit`
//! returns, so the gallery acknowledges an enrollment only once it is
//! durable. Vector indexes are derived from it and rebuilt from it.
//!
//! Template ids come from `AUTOINCREMENT`, so they only grow and are never
//! reused: they double as index row ids, and an index's largest id tells how
//! far it has caught up. Deleting a subject removes its templates (no
//! biometric data is kept) and records their ids in `pending_deletions`
//! until compaction has removed the rows from the indexes
//! ([`Catalog::clear_pending_deletions`]): a tombstone can be lost with a
//! damaged log, a pending deletion cannot.
//!
//! The schema is versioned with `PRAGMA user_version` and upgraded by the
//! ordered [`MIGRATIONS`] at open; a catalog newer than this build is
//! refused with [`Error::IncompatibleFormat`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Result};
use crate::gallery::{
    CollectionInfo, CollectionSpec, EnrollReceipt, Modality, Position, SubjectRecord,
    TemplateRecord,
};
use crate::vector::{Dtype, Metric};

/// Schema migrations; entry `i` upgrades version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // Version 1.
    "
    CREATE TABLE collections (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        modality TEXT NOT NULL,
        model_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        dim INTEGER NOT NULL,
        metric TEXT NOT NULL,
        dtype TEXT NOT NULL,
        max_per_subject INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        UNIQUE (modality, model_id, model_version, dim)
    );
    CREATE TABLE subjects (
        id INTEGER PRIMARY KEY,
        external_id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL DEFAULT 'active',
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE templates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        subject_id INTEGER NOT NULL REFERENCES subjects(id),
        collection_id INTEGER NOT NULL REFERENCES collections(id),
        position TEXT NOT NULL,
        quality REAL,
        vector BLOB,
        record BLOB,
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX templates_by_subject ON templates(subject_id);
    CREATE INDEX templates_by_collection ON templates(collection_id, id);
    CREATE TABLE pending_deletions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        template_id INTEGER NOT NULL,
        collection_id INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        operation TEXT NOT NULL,
        subjects TEXT NOT NULL,
        outcome TEXT NOT NULL,
        request_id TEXT
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        params TEXT NOT NULL,
        progress REAL NOT NULL DEFAULT 0,
        result TEXT,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    ",
    // Version 2: checkpoints of N:N de-duplication jobs. A block pair's
    // kept template pairs and its row in `dedup_tiles` commit together.
    "
    CREATE TABLE dedup_tiles (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        collection_id INTEGER NOT NULL,
        tile_a INTEGER NOT NULL,
        tile_b INTEGER NOT NULL,
        comparisons INTEGER NOT NULL,
        done_ms INTEGER NOT NULL,
        PRIMARY KEY (job_id, collection_id, tile_a, tile_b)
    );
    CREATE TABLE dedup_pairs (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        collection_id INTEGER NOT NULL,
        template_a INTEGER NOT NULL,
        template_b INTEGER NOT NULL,
        subject_a INTEGER NOT NULL,
        subject_b INTEGER NOT NULL,
        score REAL NOT NULL
    );
    CREATE INDEX dedup_pairs_by_job ON dedup_pairs(job_id);
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// One audit-log entry. Never holds biometric data: ids and outcomes only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    /// Who asked (an API key id, `cli`, …).
    pub actor: String,
    /// What was done (`enroll`, `delete`, `identify`, …).
    pub operation: String,
    /// External ids of the subjects concerned.
    pub subjects: Vec<String>,
    /// Result (`ok`, `duplicate`, `rejected: …`).
    pub outcome: String,
    /// Request id, if the operation came over the API.
    pub request_id: Option<String>,
}

/// A stored audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Time, Unix milliseconds.
    pub at_ms: i64,
    /// The entry.
    pub entry: Audit,
}

/// A template ready to store: collection resolved, vector validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTemplate {
    /// Collection id.
    pub collection_id: u64,
    /// Position.
    pub position: Position,
    /// Capture quality.
    pub quality: Option<f32>,
    /// The embedding as given.
    pub vector: Vec<f32>,
    /// The minutiae record it was made from (finger templates).
    pub record: Option<Vec<u8>>,
}

/// A template deletion the indexes have not made durable yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingDeletion {
    /// Order of the deletion.
    pub seq: u64,
    /// Deleted template.
    pub template_id: u64,
    /// Its collection.
    pub collection_id: u64,
}

/// What a replacement changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// The new templates.
    pub receipt: EnrollReceipt,
    /// The removed templates: (template id, collection id).
    pub removed: Vec<(u64, u64)>,
}

/// A subject's templates, without their vectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectTemplates {
    /// Catalog id of the subject.
    pub subject_id: u64,
    /// Its templates in id order.
    pub templates: Vec<TemplateRef>,
}

/// Where a template is, without its vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateRef {
    /// Template id.
    pub id: u64,
    /// Its collection.
    pub collection_id: u64,
    /// Its position.
    pub position: Position,
}

/// A connection to the catalog.
#[derive(Debug)]
pub struct Catalog {
    pub(super) conn: Connection,
    path: PathBuf,
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `path` for reading and
    /// writing, and brings its schema up to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Catalog> {
        let conn = Connection::open(path).map_err(|e| catalog_error(path, e))?;
        let mut catalog = Catalog {
            conn,
            path: path.to_path_buf(),
        };
        catalog.configure()?;
        catalog.migrate()?;
        Ok(catalog)
    }

    /// Opens an existing catalog for reading only (searches resolve subject
    /// names on such connections while the writer writes).
    pub fn open_read_only(path: &Path) -> Result<Catalog> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| catalog_error(path, e))?;
        let catalog = Catalog {
            conn,
            path: path.to_path_buf(),
        };
        catalog
            .conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| catalog.err(e))?;
        let version = catalog.schema_version()?;
        if version != SCHEMA_VERSION {
            return Err(Error::IncompatibleFormat {
                path: path.to_path_buf(),
                reason: format!("catalog schema {version}, this build reads {SCHEMA_VERSION}"),
            });
        }
        Ok(catalog)
    }

    pub(super) fn err(&self, e: rusqlite::Error) -> Error {
        catalog_error(&self.path, e)
    }

    fn configure(&mut self) -> Result<()> {
        // Before the first table exists (later it cannot change in WAL
        // mode): a 512-dimension template is a 2 KiB blob, and 4 KiB pages
        // would hold one such row each, half empty; 16 KiB pages hold seven.
        self.conn
            .execute_batch("PRAGMA page_size = 16384")
            .map_err(|e| self.err(e))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::invalid(
                "catalog",
                format!(
                    "{} cannot use write-ahead logging (journal mode {mode})",
                    self.path.display()
                ),
            ));
        }
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| self.err(e))?;
        self.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| self.err(e))
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> Result<u32> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<()> {
        let version = self.schema_version()?;
        if version > SCHEMA_VERSION {
            return Err(Error::IncompatibleFormat {
                path: self.path.clone(),
                reason: format!(
                    "catalog schema {version} is newer than this build's {SCHEMA_VERSION}"
                ),
            });
        }
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let path = self.path.clone();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| catalog_error(&path, e))?;
            tx.execute_batch(sql).map_err(|e| catalog_error(&path, e))?;
            tx.pragma_update(None, "user_version", from as u32 + 1)
                .map_err(|e| catalog_error(&path, e))?;
            tx.commit().map_err(|e| catalog_error(&path, e))?;
            tracing::info!(path = %path.display(), version = from + 1, "catalog schema upgraded");
        }
        Ok(())
    }

    /// The catalog's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every collection, by id.
    pub fn collections(&self) -> Result<Vec<CollectionInfo>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, name, modality, model_id, model_version, dim, metric, dtype, max_per_subject
                 FROM collections ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, modality, model_id, model_version, dim, metric, dtype, max) =
                row.map_err(|e| self.err(e))?;
            let bad = |what: &str, e: Error| {
                Error::corrupted(&self.path, format!("collection {name}: {what}: {e}"))
            };
            out.push(CollectionInfo {
                id: id as u64,
                spec: CollectionSpec {
                    modality: Modality::parse(&modality).map_err(|e| bad("modality", e))?,
                    model_id,
                    model_version,
                    dim: dim as usize,
                    metric: Metric::parse(&metric).map_err(|e| bad("metric", e))?,
                    dtype: Dtype::parse(&dtype).map_err(|e| bad("dtype", e))?,
                    name,
                },
                max_per_subject: max as usize,
            });
        }
        Ok(out)
    }

    /// Adds a collection (the caller checked it does not exist yet).
    pub fn insert_collection(&mut self, spec: &CollectionSpec) -> Result<CollectionInfo> {
        spec.validate()?;
        self.conn
            .execute(
                "INSERT INTO collections (name, modality, model_id, model_version, dim, metric, dtype, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    spec.name,
                    spec.modality.name(),
                    spec.model_id,
                    spec.model_version,
                    spec.dim as i64,
                    spec.metric.name(),
                    spec.dtype.name(),
                    now_ms()
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    Error::CollectionConflict {
                        name: spec.name.clone(),
                        reason: format!(
                            "another collection already holds {} embeddings of {} {} with {} dimensions",
                            spec.modality, spec.model_id, spec.model_version, spec.dim
                        ),
                    }
                }
                e => self.err(e),
            })?;
        Ok(CollectionInfo {
            id: self.conn.last_insert_rowid() as u64,
            spec: spec.clone(),
            max_per_subject: 0,
        })
    }

    /// Stores subjects with their templates in one durable transaction:
    /// all of them or none. Fails with [`Error::SubjectExists`] if a
    /// subject id is taken (or repeated in the batch).
    pub fn enroll(
        &mut self,
        batch: &[(String, Vec<NewTemplate>)],
        audit: &Audit,
    ) -> Result<Vec<EnrollReceipt>> {
        let path = self.path.clone();
        let e = |e| catalog_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let now = now_ms();
        let mut receipts = Vec::with_capacity(batch.len());
        {
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM subjects WHERE external_id = ?1")
                .map_err(e)?;
            let mut subject = tx
                .prepare_cached("INSERT INTO subjects (external_id, created_ms, updated_ms) VALUES (?1, ?2, ?2)")
                .map_err(e)?;
            for (external, templates) in batch {
                if exists.exists([external]).map_err(e)? {
                    return Err(Error::SubjectExists {
                        subject: external.clone(),
                    });
                }
                subject.execute(params![external, now]).map_err(e)?;
                let subject_id = tx.last_insert_rowid() as u64;
                let template_ids = insert_templates(&tx, subject_id, templates, now).map_err(e)?;
                receipts.push(EnrollReceipt {
                    subject: external.clone(),
                    subject_id,
                    template_ids,
                });
            }
        }
        raise_max_per_subject(&tx, batch.iter().map(|(_, t)| t.as_slice())).map_err(e)?;
        insert_audit(&tx, audit, now).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(receipts)
    }

    /// Replaces every template of `subject` in one durable transaction.
    pub fn replace(
        &mut self,
        subject: &str,
        templates: &[NewTemplate],
        audit: &Audit,
    ) -> Result<Replaced> {
        let path = self.path.clone();
        let e = |e| catalog_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let now = now_ms();
        let subject_id =
            subject_id(&tx, subject)
                .map_err(e)?
                .ok_or_else(|| Error::UnknownSubject {
                    subject: subject.to_string(),
                })?;
        let removed = remove_templates(&tx, subject_id).map_err(e)?;
        let template_ids = insert_templates(&tx, subject_id, templates, now).map_err(e)?;
        tx.execute(
            "UPDATE subjects SET updated_ms = ?1 WHERE id = ?2",
            params![now, subject_id as i64],
        )
        .map_err(e)?;
        raise_max_per_subject(&tx, std::iter::once(templates)).map_err(e)?;
        insert_audit(&tx, audit, now).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(Replaced {
            receipt: EnrollReceipt {
                subject: subject.to_string(),
                subject_id,
                template_ids,
            },
            removed,
        })
    }

    /// Deletes `subject` and its templates in one durable transaction;
    /// returns the removed templates as (template id, collection id).
    pub fn delete(&mut self, subject: &str, audit: &Audit) -> Result<Vec<(u64, u64)>> {
        let path = self.path.clone();
        let e = |e| catalog_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let subject_id =
            subject_id(&tx, subject)
                .map_err(e)?
                .ok_or_else(|| Error::UnknownSubject {
                    subject: subject.to_string(),
                })?;
        let removed = remove_templates(&tx, subject_id).map_err(e)?;
        tx.execute("DELETE FROM subjects WHERE id = ?1", [subject_id as i64])
            .map_err(e)?;
        insert_audit(&tx, audit, now_ms()).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(removed)
    }

    /// Appends an audit entry on its own.
    pub fn append_audit(&mut self, audit: &Audit) -> Result<()> {
        insert_audit(&self.conn, audit, now_ms()).map_err(|e| self.err(e))
    }

    /// The most recent audit entries, newest first.
    pub fn audit_entries(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let mut stmt = self
            .conn
            .prepare("SELECT at_ms, actor, operation, subjects, outcome, request_id FROM audit ORDER BY id DESC LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                let subjects: String = r.get(3)?;
                Ok(AuditRecord {
                    at_ms: r.get(0)?,
                    entry: Audit {
                        actor: r.get(1)?,
                        operation: r.get(2)?,
                        subjects: serde_json::from_str(&subjects).unwrap_or_default(),
                        outcome: r.get(4)?,
                        request_id: r.get(5)?,
                    },
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// A subject with all its templates, or `None`.
    pub fn subject(&self, subject: &str) -> Result<Option<SubjectRecord>> {
        let found = self
            .conn
            .query_row(
                "SELECT id, created_ms, updated_ms FROM subjects WHERE external_id = ?1",
                [subject],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((id, created_ms, updated_ms)) = found else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT t.id, c.name, t.position, t.quality, t.vector, t.record FROM templates t
                 JOIN collections c ON c.id = t.collection_id WHERE t.subject_id = ?1 ORDER BY t.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                    r.get::<_, Option<Vec<u8>>>(5)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut templates = Vec::new();
        for row in rows {
            let (tid, collection, position, quality, blob, record) =
                row.map_err(|e| self.err(e))?;
            templates.push(TemplateRecord {
                id: tid as u64,
                collection,
                position: Position::parse(&position)
                    .map_err(|e| Error::corrupted(&self.path, format!("template {tid}: {e}")))?,
                quality: quality.map(|q| q as f32),
                vector: self.decode_vector(
                    tid as u64,
                    blob.as_deref().unwrap_or_default(),
                    None,
                )?,
                record,
            });
        }
        Ok(Some(SubjectRecord {
            subject: subject.to_string(),
            subject_id: id as u64,
            created_ms,
            updated_ms,
            templates,
        }))
    }

    /// A subject's catalog id and the ids, collections and positions of its
    /// templates, or `None`.
    pub fn subject_templates(&self, subject: &str) -> Result<Option<SubjectTemplates>> {
        let Some(id) = subject_id(&self.conn, subject).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, collection_id, position FROM templates WHERE subject_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (t, c, position) = row.map_err(|e| self.err(e))?;
            let position = Position::parse(&position)
                .map_err(|e| Error::corrupted(&self.path, format!("template {t}: {e}")))?;
            out.push(TemplateRef {
                id: t,
                collection_id: c,
                position,
            });
        }
        Ok(Some(SubjectTemplates {
            subject_id: id,
            templates: out,
        }))
    }

    /// External ids of subjects by catalog id (absent ids are left out).
    pub fn external_ids(&self, ids: &[u64]) -> Result<HashMap<u64, String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT external_id FROM subjects WHERE id = ?1")
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::with_capacity(ids.len());
        for &id in ids {
            if let Some(name) = stmt
                .query_row([id as i64], |r| r.get::<_, String>(0))
                .optional()
                .map_err(|e| self.err(e))?
            {
                out.insert(id, name);
            }
        }
        Ok(out)
    }

    /// Number of enrolled subjects.
    pub fn subject_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM subjects", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Calls `f(template id, subject id, vector)` for the templates of a
    /// collection with ids in `first..=last`, in increasing id order.
    pub fn for_each_template(
        &self,
        collection_id: u64,
        first: u64,
        last: u64,
        dim: usize,
        mut f: impl FnMut(u64, u64, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, subject_id, vector FROM templates
                 WHERE collection_id = ?1 AND id BETWEEN ?2 AND ?3 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let last = last.min(i64::MAX as u64) as i64;
        let mut rows = stmt
            .query(params![collection_id as i64, first as i64, last])
            .map_err(|e| self.err(e))?;
        let mut vector = Vec::with_capacity(dim);
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let id = row.get::<_, i64>(0).map_err(|e| self.err(e))? as u64;
            let subject = row.get::<_, i64>(1).map_err(|e| self.err(e))? as u64;
            let blob = row
                .get_ref(2)
                .map_err(|e| self.err(e))?
                .as_blob_or_null()
                .map_err(|e| self.err(e.into()))?;
            vector.clear();
            vector.extend(self.decode_vector(id, blob.unwrap_or_default(), Some(dim))?);
            f(id, subject, &vector)?;
        }
        Ok(())
    }

    /// Calls `f(template id, subject id, position, record)` for every
    /// template of a collection that has a minutiae record, in id order.
    pub fn for_each_record(
        &self,
        collection_id: u64,
        mut f: impl FnMut(u64, u64, Position, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, subject_id, position, record FROM templates
                 WHERE collection_id = ?1 AND record IS NOT NULL ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![collection_id as i64])
            .map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let id = row.get::<_, i64>(0).map_err(|e| self.err(e))? as u64;
            let subject = row.get::<_, i64>(1).map_err(|e| self.err(e))? as u64;
            let position = row.get::<_, String>(2).map_err(|e| self.err(e))?;
            let position = Position::parse(&position)
                .map_err(|e| Error::corrupted(&self.path, format!("template {id}: {e}")))?;
            let record = row
                .get_ref(3)
                .map_err(|e| self.err(e))?
                .as_blob()
                .map_err(|e| self.err(e.into()))?;
            f(id, subject, position, record)?;
        }
        Ok(())
    }

    fn decode_vector(&self, id: u64, blob: &[u8], dim: Option<usize>) -> Result<Vec<f32>> {
        if !blob.len().is_multiple_of(4) || dim.is_some_and(|d| d * 4 != blob.len()) {
            return Err(Error::corrupted(
                &self.path,
                format!(
                    "template {id}: vector of {} bytes (dimension {dim:?})",
                    blob.len()
                ),
            ));
        }
        Ok(blob
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }

    /// Deletions not yet cleared, in order.
    pub fn pending_deletions(&self) -> Result<Vec<PendingDeletion>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, template_id, collection_id FROM pending_deletions ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PendingDeletion {
                    seq: r.get::<_, i64>(0)? as u64,
                    template_id: r.get::<_, i64>(1)? as u64,
                    collection_id: r.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Forgets the pending deletions with these sequence numbers (their
    /// rows are gone from the indexes), in one transaction.
    pub fn clear_pending_deletions(&mut self, seqs: &[u64]) -> Result<()> {
        let path = self.path.clone();
        let e = |e| catalog_error(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM pending_deletions WHERE seq = ?1")
                .map_err(e)?;
            for &seq in seqs {
                stmt.execute([seq as i64]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }
}

pub(super) fn catalog_error(path: &Path, source: rusqlite::Error) -> Error {
    Error::Catalog {
        path: path.to_path_buf(),
        source,
    }
}

fn subject_id(conn: &Connection, subject: &str) -> rusqlite::Result<Option<u64>> {
    conn.query_row(
        "SELECT id FROM subjects WHERE external_id = ?1",
        [subject],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|id| id.map(|id| id as u64))
}

fn insert_templates(
    conn: &Connection,
    subject_id: u64,
    templates: &[NewTemplate],
    now: i64,
) -> rusqlite::Result<Vec<u64>> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO templates (subject_id, collection_id, position, quality, vector, record, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut ids = Vec::with_capacity(templates.len());
    for t in templates {
        stmt.execute(params![
            subject_id as i64,
            t.collection_id as i64,
            t.position.name(),
            t.quality.map(f64::from),
            encode_vector(&t.vector),
            t.record,
            now
        ])?;
        ids.push(conn.last_insert_rowid() as u64);
    }
    Ok(ids)
}

/// Deletes a subject's templates, records them as pending deletions and
/// returns them as (template id, collection id).
fn remove_templates(conn: &Connection, subject_id: u64) -> rusqlite::Result<Vec<(u64, u64)>> {
    let removed: Vec<(u64, u64)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, collection_id FROM templates WHERE subject_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([subject_id as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut pending = conn.prepare_cached(
        "INSERT INTO pending_deletions (template_id, collection_id) VALUES (?1, ?2)",
    )?;
    for &(t, c) in &removed {
        pending.execute([t as i64, c as i64])?;
    }
    conn.execute(
        "DELETE FROM templates WHERE subject_id = ?1",
        [subject_id as i64],
    )?;
    Ok(removed)
}

/// Raises each collection's `max_per_subject` to cover these subjects.
fn raise_max_per_subject<'a>(
    conn: &Connection,
    subjects: impl Iterator<Item = &'a [NewTemplate]>,
) -> rusqlite::Result<()> {
    let mut max: HashMap<u64, usize> = HashMap::new();
    for templates in subjects {
        let mut per: HashMap<u64, usize> = HashMap::new();
        for t in templates {
            *per.entry(t.collection_id).or_default() += 1;
        }
        for (c, n) in per {
            let m = max.entry(c).or_default();
            *m = (*m).max(n);
        }
    }
    let mut stmt = conn.prepare_cached(
        "UPDATE collections SET max_per_subject = max(max_per_subject, ?1) WHERE id = ?2",
    )?;
    for (c, n) in max {
        stmt.execute([n as i64, c as i64])?;
    }
    Ok(())
}

fn insert_audit(conn: &Connection, audit: &Audit, now: i64) -> rusqlite::Result<()> {
    let subjects = serde_json::to_string(&audit.subjects).expect("strings serialise");
    conn.prepare_cached(
        "INSERT INTO audit (at_ms, actor, operation, subjects, outcome, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![now, audit.actor, audit.operation, subjects, audit.outcome, audit.request_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, dim: usize) -> CollectionSpec {
        CollectionSpec {
            name: name.into(),
            modality: Modality::Face,
            model_id: "m".into(),
            model_version: format!("v{dim}"),
            dim,
            metric: Metric::Cosine,
            dtype: Dtype::F32,
        }
    }

    fn audit(op: &str) -> Audit {
        Audit {
            actor: "test".into(),
            operation: op.into(),
            subjects: vec![],
            outcome: "ok".into(),
            request_id: None,
        }
    }

    fn template(c: u64, x: f32) -> NewTemplate {
        NewTemplate {
            collection_id: c,
            position: Position::Face,
            quality: Some(0.5),
            vector: vec![x, -x, 0.25],
            record: None,
        }
    }

    #[test]
    fn schema_is_created_once_and_wal_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = c
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = c
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            (mode.as_str(), sync),
            ("wal", 2),
            "WAL with synchronous=FULL"
        );
        drop(c);
        assert_eq!(
            Catalog::open(&path).unwrap().schema_version().unwrap(),
            SCHEMA_VERSION
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let c = Catalog::open(&path).unwrap();
        c.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(c);
        assert!(matches!(
            Catalog::open(&path),
            Err(Error::IncompatibleFormat { .. })
        ));
    }

    #[test]
    fn enrollment_is_all_or_nothing_and_ids_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let col = c.insert_collection(&spec("face", 3)).unwrap();
        let r = c
            .enroll(
                &[(
                    "a".into(),
                    vec![template(col.id, 1.0), template(col.id, 2.0)],
                )],
                &audit("enroll"),
            )
            .unwrap();
        assert_eq!(r[0].template_ids, vec![1, 2]);
        // A batch with a taken id stores nothing.
        let batch = vec![
            ("b".into(), vec![template(col.id, 3.0)]),
            ("a".into(), vec![template(col.id, 4.0)]),
        ];
        assert!(
            matches!(c.enroll(&batch, &audit("enroll")), Err(Error::SubjectExists { subject }) if subject == "a")
        );
        assert!(c.subject("b").unwrap().is_none());
        assert_eq!(c.subject_count().unwrap(), 1);
        // Deleted ids are never reused.
        let removed = c.delete("a", &audit("delete")).unwrap();
        assert_eq!(removed, vec![(1, col.id), (2, col.id)]);
        let r = c
            .enroll(
                &[("a".into(), vec![template(col.id, 5.0)])],
                &audit("enroll"),
            )
            .unwrap();
        assert_eq!(r[0].template_ids, vec![3]);
        let pending = c.pending_deletions().unwrap();
        assert_eq!(
            pending.iter().map(|p| p.template_id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        c.clear_pending_deletions(&[pending[0].seq]).unwrap();
        assert_eq!(c.pending_deletions().unwrap().len(), 1);
    }

    #[test]
    fn records_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let col = c.insert_collection(&spec("face", 3)).unwrap();
        let t = NewTemplate {
            collection_id: col.id,
            position: Position::Face,
            quality: None,
            vector: vec![f32::MIN_POSITIVE, -0.0, 1.0 / 3.0],
            record: None,
        };
        c.enroll(
            &[("079123456789".into(), vec![t.clone()])],
            &audit("enroll"),
        )
        .unwrap();
        let s = c.subject("079123456789").unwrap().unwrap();
        assert_eq!(
            s.templates[0]
                .vector
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>(),
            t.vector.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(s.templates[0].collection, "face");
        let mut seen = Vec::new();
        c.for_each_template(col.id, 0, u64::MAX, 3, |id, subject, v| {
            seen.push((id, subject, v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(1, s.subject_id, t.vector.clone())]);
        assert_eq!(c.external_ids(&[s.subject_id, 99]).unwrap().len(), 1);
        assert_eq!(c.collections().unwrap()[0].max_per_subject, 1);
    }

    #[test]
    fn replacement_swaps_templates_and_collections_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let col = c.insert_collection(&spec("face", 3)).unwrap();
        c.enroll(
            &[("s".into(), vec![template(col.id, 1.0)])],
            &audit("enroll"),
        )
        .unwrap();
        let r = c
            .replace(
                "s",
                &[template(col.id, 2.0), template(col.id, 3.0)],
                &audit("replace"),
            )
            .unwrap();
        assert_eq!(r.removed, vec![(1, col.id)]);
        assert_eq!(r.receipt.template_ids, vec![2, 3]);
        assert_eq!(c.collections().unwrap()[0].max_per_subject, 2);
        assert!(matches!(
            c.replace("nobody", &[], &audit("replace")),
            Err(Error::UnknownSubject { .. })
        ));
        // Same embedding space under another name.
        let e = c.insert_collection(&spec("face2", 3)).unwrap_err();
        assert!(matches!(e, Error::CollectionConflict { .. }), "{e}");
        assert_eq!(c.audit_entries(10).unwrap().len(), 2);
        assert_eq!(c.audit_entries(10).unwrap()[0].entry.operation, "replace");
    }
}
