//! Jobs in the catalog: long-running work that outlives a process.
//!
//! A job is a row of `jobs` (kind, state, parameters as JSON, progress,
//! result as JSON). N:N de-duplication checkpoints each finished block pair
//! in `dedup_tiles` and its kept template pairs in `dedup_pairs`, both in
//! one transaction ([`Catalog::record_tile`]): after a crash a block pair
//! is either finished with all its pairs or not started, so a resumed job
//! redoes only unfinished block pairs and ends with the same pairs as an
//! uninterrupted run.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::catalog::{Catalog, now_ms};
use crate::error::{Error, Result};

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Created, not started.
    Queued,
    /// Started (or interrupted while running: it resumes).
    Running,
    /// Finished; `result` says where its output is.
    Done,
    /// Stopped by an error; `result` holds the message.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobState {
    /// Lower-case name, as stored and reported.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses [`JobState::name`].
    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|st| st.name() == s)
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A stored job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// Job id.
    pub id: u64,
    /// What kind of job (`dedup`).
    pub kind: String,
    /// Its state.
    pub state: JobState,
    /// Parameters, JSON.
    pub params: String,
    /// Fraction done, 0 to 1.
    pub progress: f64,
    /// Result (JSON) when done, error message when failed.
    pub result: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Last change, Unix milliseconds.
    pub updated_ms: i64,
}

/// One unit of a de-duplication job: block pair `(tile_a, tile_b)` of a
/// collection, `tile_a ≤ tile_b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TilePair {
    /// Collection id.
    pub collection_id: u64,
    /// First tile.
    pub tile_a: u32,
    /// Second tile.
    pub tile_b: u32,
}

/// A template pair a de-duplication job kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeptPair {
    /// Collection id.
    pub collection_id: u64,
    /// Template with the lower id.
    pub template_a: u64,
    /// Template with the higher id.
    pub template_b: u64,
    /// Subject of `template_a`.
    pub subject_a: u64,
    /// Subject of `template_b`.
    pub subject_b: u64,
    /// Exact score.
    pub score: f32,
}

const JOB_COLUMNS: &str = "id, kind, state, params, progress, result, created_ms, updated_ms";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(JobRecord, String)> {
    let state: String = r.get(2)?;
    Ok((
        JobRecord {
            id: r.get::<_, i64>(0)? as u64,
            kind: r.get(1)?,
            state: JobState::Queued,
            params: r.get(3)?,
            progress: r.get(4)?,
            result: r.get(5)?,
            created_ms: r.get(6)?,
            updated_ms: r.get(7)?,
        },
        state,
    ))
}

impl Catalog {
    fn job_from(&self, (mut job, state): (JobRecord, String)) -> Result<JobRecord> {
        job.state = JobState::parse(&state).ok_or_else(|| {
            Error::corrupted(self.path(), format!("job {}: state `{state}`", job.id))
        })?;
        Ok(job)
    }

    /// Creates a queued job and returns its id (durable on return).
    pub fn create_job(&mut self, kind: &str, params: &str) -> Result<u64> {
        let now = now_ms();
        self.conn
            .execute(
                "INSERT INTO jobs (kind, state, params, created_ms, updated_ms)
                 VALUES (?1, 'queued', ?2, ?3, ?3)",
                params![kind, params, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid() as u64)
    }

    /// The job `id`, if it exists.
    pub fn job(&self, id: u64) -> Result<Option<JobRecord>> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id as i64],
                job_row,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|r| self.job_from(r)).transpose()
    }

    /// Jobs of `kind`, oldest first.
    pub fn jobs(&self, kind: &str) -> Result<Vec<JobRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE kind = ?1 ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([kind], job_row)
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(|r| self.job_from(r)).collect()
    }

    /// Sets a job's state, progress and result.
    pub fn set_job_state(
        &mut self,
        id: u64,
        state: JobState,
        progress: f64,
        result: Option<&str>,
    ) -> Result<()> {
        let changed = self
            .conn
            .execute(
                "UPDATE jobs SET state = ?2, progress = ?3, result = ?4, updated_ms = ?5
                 WHERE id = ?1",
                params![id as i64, state.name(), progress, result, now_ms()],
            )
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(Error::invalid("job", format!("no job {id}")));
        }
        Ok(())
    }

    /// Records a finished block pair and the template pairs it kept, in one
    /// durable transaction. Recording the same block pair twice is an error
    /// (and stores nothing).
    pub fn record_tile(
        &mut self,
        job: u64,
        tile: TilePair,
        comparisons: u64,
        pairs: &[KeptPair],
    ) -> Result<()> {
        let path = self.path().to_path_buf();
        let err = |e| crate::storage::catalog::catalog_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute(
            "INSERT INTO dedup_tiles (job_id, collection_id, tile_a, tile_b, comparisons, done_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                job as i64,
                tile.collection_id as i64,
                tile.tile_a,
                tile.tile_b,
                comparisons as i64,
                now_ms()
            ],
        )
        .map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO dedup_pairs
                     (job_id, collection_id, template_a, template_b, subject_a, subject_b, score)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            for p in pairs {
                stmt.execute(params![
                    job as i64,
                    p.collection_id as i64,
                    p.template_a as i64,
                    p.template_b as i64,
                    p.subject_a as i64,
                    p.subject_b as i64,
                    f64::from(p.score)
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The block pairs a job has finished, with their comparison counts.
    pub fn done_tiles(&self, job: u64) -> Result<Vec<(TilePair, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT collection_id, tile_a, tile_b, comparisons FROM dedup_tiles
                 WHERE job_id = ?1 ORDER BY collection_id, tile_a, tile_b",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([job as i64], |r| {
            Ok((
                TilePair {
                    collection_id: r.get::<_, i64>(0)? as u64,
                    tile_a: r.get(1)?,
                    tile_b: r.get(2)?,
                },
                r.get::<_, i64>(3)? as u64,
            ))
        })
        .map_err(|e| self.err(e))?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| self.err(e))
    }

    /// Every template pair a job has kept so far.
    pub fn kept_pairs(&self, job: u64) -> Result<Vec<KeptPair>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT collection_id, template_a, template_b, subject_a, subject_b, score
                 FROM dedup_pairs WHERE job_id = ?1",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([job as i64], |r| {
            Ok(KeptPair {
                collection_id: r.get::<_, i64>(0)? as u64,
                template_a: r.get::<_, i64>(1)? as u64,
                template_b: r.get::<_, i64>(2)? as u64,
                subject_a: r.get::<_, i64>(3)? as u64,
                subject_b: r.get::<_, i64>(4)? as u64,
                score: r.get::<_, f64>(5)? as f32,
            })
        })
        .map_err(|e| self.err(e))?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: u64, b: u64, score: f32) -> KeptPair {
        KeptPair {
            collection_id: 1,
            template_a: a,
            template_b: b,
            subject_a: a,
            subject_b: b,
            score,
        }
    }

    #[test]
    fn jobs_and_checkpoints_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let id = c.create_job("dedup", r#"{"threshold":0.5}"#).unwrap();
        let job = c.job(id).unwrap().unwrap();
        assert_eq!(
            (job.kind.as_str(), job.state, job.progress),
            ("dedup", JobState::Queued, 0.0)
        );
        assert!(c.job(id + 1).unwrap().is_none());
        let tile = TilePair {
            collection_id: 1,
            tile_a: 0,
            tile_b: 2,
        };
        c.record_tile(id, tile, 99, &[pair(1, 5, 0.75), pair(2, 9, 0.5)])
            .unwrap();
        // A tile is recorded once; a second attempt stores no pairs.
        assert!(c.record_tile(id, tile, 99, &[pair(3, 4, 0.9)]).is_err());
        assert_eq!(c.done_tiles(id).unwrap(), vec![(tile, 99)]);
        let kept = c.kept_pairs(id).unwrap();
        assert_eq!(kept.len(), 2);
        assert!(kept.contains(&pair(1, 5, 0.75)));
        c.set_job_state(id, JobState::Done, 1.0, Some("{}"))
            .unwrap();
        let job = c.job(id).unwrap().unwrap();
        assert_eq!(
            (job.state, job.result.as_deref()),
            (JobState::Done, Some("{}"))
        );
        assert!(job.state.is_final());
        assert_eq!(c.jobs("dedup").unwrap().len(), 1);
        assert!(
            c.set_job_state(id + 7, JobState::Failed, 0.0, None)
                .is_err()
        );
    }

    #[test]
    fn a_version_1_catalog_is_upgraded_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(crate::storage::catalog::MIGRATIONS[0])
                .unwrap();
            conn.execute(
                "INSERT INTO jobs (kind, state, params, created_ms, updated_ms)
                 VALUES ('dedup', 'done', '{}', 1, 2)",
                [],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let mut c = Catalog::open(&path).unwrap();
        assert_eq!(
            c.schema_version().unwrap(),
            crate::storage::catalog::SCHEMA_VERSION
        );
        assert_eq!(c.job(1).unwrap().unwrap().state, JobState::Done);
        let id = c.create_job("dedup", "{}").unwrap();
        let tile = TilePair {
            collection_id: 1,
            tile_a: 0,
            tile_b: 0,
        };
        c.record_tile(id, tile, 1, &[]).unwrap();
    }
}
