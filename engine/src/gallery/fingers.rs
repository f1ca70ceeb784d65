//! Minutiae collections: finger templates enrolled as minutiae records,
//! searched in two stages.
//!
//! A collection whose model is [`MODEL_ID`] (see [`minutiae_collection`])
//! stores, per finger template, the minutiae record as given (in the
//! catalog, the source of truth) and, in its flat index, the record's
//! fixed-length vector ([`crate::finger::vector`]), which the gallery
//! computes itself. The prepared matcher templates of every record are
//! kept in memory (built at open, updated by every write) for re-ranking.
//!
//! * **Verify**: each probe finger against the subject's templates at a
//!   compatible position (the same, or either unknown); its score is the
//!   best of those.
//! * **Identify**: each probe finger's vector selects a shortlist of rows
//!   in the flat index; the union of their subjects is re-scored with the
//!   minutiae matcher.
//! * **Fusion** (several probe fingers): a subject's score is the mean over
//!   the probe fingers of each finger's best score, a finger without a
//!   compatible template counting 0. The mean keeps the matcher's scale,
//!   so a one-finger threshold stays meaningful, and rewards agreement of
//!   independent fingers.
//!
//! Template ids are never reused and a template never changes, so the
//! in-memory table needs no snapshot of its own: a search looks up the
//! ids its index snapshot returned and skips any deleted since.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Gallery, Position, Search};
use crate::error::{Error, Result};
use crate::finger::{Encoder, Matcher, MinutiaeRecord, Params, Template, vector};
use crate::rng::SplitMix;
use crate::storage::catalog::Catalog;
use crate::vector::{Dtype, Metric};

use super::types::{CollectionSpec, Modality};

/// Model id of minutiae collections.
pub const MODEL_ID: &str = "biomatch-mcc";
/// Version of the matcher and vector those collections are built with.
pub const MODEL_VERSION: &str = "1";

/// The definition of a minutiae collection named `name`.
pub fn minutiae_collection(name: &str) -> CollectionSpec {
    CollectionSpec {
        name: name.to_string(),
        modality: Modality::Finger,
        model_id: MODEL_ID.to_string(),
        model_version: MODEL_VERSION.to_string(),
        dim: vector::DIM,
        metric: Metric::Cosine,
        dtype: Dtype::F32,
    }
}

/// Whether a collection holds minutiae records.
pub fn is_minutiae(spec: &CollectionSpec) -> bool {
    spec.modality == Modality::Finger && spec.model_id == MODEL_ID
}

/// A finger record parsed and prepared for matching.
#[derive(Clone, Debug)]
pub struct PreparedFinger {
    /// Finger position.
    pub position: Position,
    /// The matcher template.
    pub template: Arc<Template>,
    /// The first-stage vector.
    pub vector: Vec<f32>,
}

/// One probe finger's outcome against one subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FingerScore {
    /// Probe position.
    pub position: Position,
    /// Best minutiae score over the subject's compatible templates; `None`
    /// when it has none.
    pub score: Option<f32>,
    /// The template that gave it.
    pub template_id: Option<u64>,
}

/// A subject's fused finger result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FingerMatch {
    /// External subject id.
    pub subject: String,
    /// Catalog id.
    pub subject_id: u64,
    /// Mean over the probe fingers of their best scores (missing: 0).
    pub score: f32,
    /// Per probe finger, in probe order.
    pub fingers: Vec<FingerScore>,
}

struct Entry {
    subject_id: u64,
    position: Position,
    template: Arc<Template>,
}

#[derive(Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    by_subject: HashMap<u64, Vec<u64>>,
}

/// The prepared templates of every minutiae collection.
pub(super) struct Fingers {
    encoder: Encoder,
    params: Params,
    tables: RwLock<HashMap<u64, Table>>,
}

impl Fingers {
    pub(super) fn new() -> Fingers {
        let params = Params::default();
        Fingers {
            encoder: Encoder::new(params),
            params,
            tables: RwLock::new(HashMap::new()),
        }
    }

    /// Parses a record and prepares it; the view at `position` if the
    /// record has one, else its first view.
    pub(super) fn prepare(&self, record: &[u8], position: Position) -> Result<PreparedFinger> {
        let parsed = MinutiaeRecord::parse(record)?;
        let code = position.iso_code();
        let index = parsed
            .views
            .iter()
            .position(|v| Some(v.position) == code)
            .unwrap_or(0);
        // Coordinates at the matcher's 500 dpi, whatever the record's resolution.
        let view = parsed
            .view_at_500dpi(index)
            .ok_or_else(|| Error::invalid("record", "no finger view"))?;
        let template = self.encoder.encode(&view);
        let vector = vector::fixed_length(&template);
        Ok(PreparedFinger {
            position,
            template: Arc::new(template),
            vector,
        })
    }

    /// Loads the records of a minutiae collection from the catalog.
    pub(super) fn load(&self, catalog: &Catalog, collection_id: u64) -> Result<()> {
        let mut table = Table::default();
        catalog.for_each_record(collection_id, |id, subject_id, position, record| {
            let prepared = self
                .prepare(record, position)
                .map_err(|e| Error::corrupted(catalog.path(), format!("template {id}: {e}")))?;
            table.insert(id, subject_id, position, prepared.template);
            Ok(())
        })?;
        self.write().insert(collection_id, table);
        Ok(())
    }

    pub(super) fn add(
        &self,
        collection_id: u64,
        template_id: u64,
        subject_id: u64,
        prepared: &PreparedFinger,
    ) {
        self.write().entry(collection_id).or_default().insert(
            template_id,
            subject_id,
            prepared.position,
            prepared.template.clone(),
        );
    }

    pub(super) fn remove(&self, collection_id: u64, template_id: u64) {
        if let Some(t) = self.write().get_mut(&collection_id)
            && let Some(e) = t.entries.remove(&template_id)
            && let Some(ids) = t.by_subject.get_mut(&e.subject_id)
        {
            ids.retain(|&i| i != template_id);
            if ids.is_empty() {
                t.by_subject.remove(&e.subject_id);
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Table>> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Table>> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Table {
    fn insert(&mut self, id: u64, subject_id: u64, position: Position, template: Arc<Template>) {
        self.entries.insert(
            id,
            Entry {
                subject_id,
                position,
                template,
            },
        );
        self.by_subject.entry(subject_id).or_default().push(id);
    }

    /// Each probe's best score against `subject`'s compatible templates.
    fn score_subject(
        &self,
        m: &mut Matcher,
        subject: u64,
        probes: &[PreparedFinger],
    ) -> Vec<FingerScore> {
        let ids = self.by_subject.get(&subject).map_or(&[][..], Vec::as_slice);
        probes
            .iter()
            .map(|p| {
                let mut best: Option<(f32, u64)> = None;
                for &id in ids {
                    let e = &self.entries[&id];
                    if !compatible(p.position, e.position) {
                        continue;
                    }
                    let s = m.score(&p.template, &e.template);
                    if best.is_none_or(|(b, bid)| s > b || (s == b && id < bid)) {
                        best = Some((s, id));
                    }
                }
                FingerScore {
                    position: p.position,
                    score: best.map(|b| b.0),
                    template_id: best.map(|b| b.1),
                }
            })
            .collect()
    }
}

/// Fingers at these positions may be compared.
fn compatible(a: Position, b: Position) -> bool {
    a == b || a == Position::UnknownFinger || b == Position::UnknownFinger
}

fn fused(scores: &[FingerScore]) -> f32 {
    scores.iter().map(|s| s.score.unwrap_or(0.0)).sum::<f32>() / scores.len().max(1) as f32
}

impl Gallery {
    /// Parses and prepares a finger record as a probe (the view at
    /// `position` if the record has several).
    pub fn prepare_finger(&self, record: &[u8], position: Position) -> Result<PreparedFinger> {
        if position.modality() != Modality::Finger {
            return Err(Error::invalid(
                "position",
                format!("{position} is not a finger"),
            ));
        }
        self.fingers.prepare(record, position)
    }

    fn minutiae_collection_id(&self, collection: &str) -> Result<u64> {
        let snap = self.snapshot();
        let (info, _) = snap.collection(collection)?;
        if !is_minutiae(&info.spec) {
            return Err(Error::invalid(
                "collection",
                format!("`{collection}` is not a minutiae collection (model {MODEL_ID})"),
            ));
        }
        Ok(info.id)
    }

    /// 1:1: each probe finger against the subject's fingers in a minutiae
    /// collection, and the fused score (module docs).
    pub fn verify_fingers(
        &self,
        subject: &str,
        collection: &str,
        probes: &[PreparedFinger],
    ) -> Result<FingerMatch> {
        let id = self.minutiae_collection_id(collection)?;
        let subject_id = self
            .readers
            .with(|c| c.subject_templates(subject))?
            .ok_or_else(|| Error::UnknownSubject {
                subject: subject.to_string(),
            })?
            .subject_id;
        let mut m = Matcher::new(self.fingers.params);
        let tables = self.fingers.read();
        let fingers = tables
            .get(&id)
            .map(|t| t.score_subject(&mut m, subject_id, probes))
            .unwrap_or_else(|| Table::default().score_subject(&mut m, subject_id, probes));
        Ok(FingerMatch {
            subject: subject.to_string(),
            subject_id,
            score: fused(&fingers),
            fingers,
        })
    }

    /// 1:N in two stages: each probe finger's `shortlist` nearest rows by
    /// vector, then every subject among them scored with the minutiae
    /// matcher and fused; best first. Runs on the caller's rayon pool.
    pub fn identify_fingers(
        &self,
        collection: &str,
        probes: &[PreparedFinger],
        shortlist: usize,
        search: Search,
    ) -> Result<Vec<FingerMatch>> {
        if probes.is_empty() {
            return Err(Error::invalid("fingers", "no probe fingers"));
        }
        let id = self.minutiae_collection_id(collection)?;
        let snap = self.snapshot();
        let (_, index) = snap.collection(collection)?;
        let mut candidates = HashSet::new();
        for p in probes {
            for hit in index.search(&p.vector, shortlist.max(1))? {
                candidates.insert(hit.label);
            }
        }
        let mut candidates: Vec<u64> = candidates.into_iter().collect();
        candidates.sort_unstable();
        let tables = self.fingers.read();
        let Some(table) = tables.get(&id) else {
            return Ok(Vec::new());
        };
        let params = self.fingers.params;
        let mut scored: Vec<(u64, f32, Vec<FingerScore>)> = candidates
            .par_iter()
            .map_init(
                || Matcher::new(params),
                |m, &s| {
                    let f = table.score_subject(m, s, probes);
                    (s, fused(&f), f)
                },
            )
            .collect();
        drop(tables);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        match search {
            Search::TopK(k) => scored.truncate(k),
            Search::Threshold(t) => scored.retain(|s| s.1 >= t),
        }
        let labels: Vec<u64> = scored.iter().map(|s| s.0).collect();
        let names = self.readers.with(|c| c.external_ids(&labels))?;
        Ok(scored
            .into_iter()
            .filter_map(|(subject_id, score, fingers)| {
                names.get(&subject_id).map(|name| FingerMatch {
                    subject: name.clone(),
                    subject_id,
                    score,
                    fingers,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;

impl Gallery {
    /// `f` on the prepared templates of a minutiae collection (`None` while
    /// it has none).
    fn with_table<T>(&self, collection: &str, f: impl FnOnce(&Table) -> T) -> Result<Option<T>> {
        let id = self.minutiae_collection_id(collection)?;
        Ok(self.fingers.read().get(&id).map(f))
    }

    /// The fused finger score of subject `a` (catalog id) against subject
    /// `b` in a minutiae collection: `a`'s fingers as probes against `b`'s
    /// templates, as [`Gallery::verify_fingers`] scores them. `None` when
    /// either has no finger there.
    pub fn subject_finger_score(&self, collection: &str, a: u64, b: u64) -> Result<Option<f32>> {
        let params = self.fingers.params;
        Ok(self
            .with_table(collection, |t| t.subject_score(params, a, b))?
            .flatten())
    }

    /// Fused finger scores of `count` random pairs of different subjects
    /// of a minutiae collection (an impostor sample when duplicates are
    /// rare). Seeded: the same gallery and seed give the same scores.
    pub fn sample_finger_scores(
        &self,
        collection: &str,
        count: usize,
        seed: u64,
    ) -> Result<Vec<f32>> {
        let params = self.fingers.params;
        Ok(self
            .with_table(collection, |table| {
                let mut subjects: Vec<u64> = table.by_subject.keys().copied().collect();
                subjects.sort_unstable();
                let n = subjects.len() as u64;
                if n < 2 {
                    return Vec::new();
                }
                let mut rng = SplitMix::new(seed);
                let pairs: Vec<(u64, u64)> = (0..count)
                    .map(|_| {
                        let a = rng.below(n);
                        let b = (a + 1 + rng.below(n - 1)) % n;
                        (subjects[a as usize], subjects[b as usize])
                    })
                    .collect();
                pairs
                    .par_iter()
                    .filter_map(|&(a, b)| table.subject_score(params, a, b))
                    .collect()
            })?
            .unwrap_or_default())
    }

    /// The minutiae score of two templates of a minutiae collection;
    /// `None` if either is not (or no longer) there or their positions are
    /// incompatible (two different known fingers).
    pub fn finger_template_score(&self, collection: &str, a: u64, b: u64) -> Result<Option<f32>> {
        let params = self.fingers.params;
        Ok(self
            .with_table(collection, |table| {
                let (ea, eb) = (table.entries.get(&a)?, table.entries.get(&b)?);
                compatible(ea.position, eb.position)
                    .then(|| Matcher::new(params).score(&ea.template, &eb.template))
            })?
            .flatten())
    }

    /// Minutiae scores of `count` random pairs of templates of different
    /// subjects at compatible positions (an impostor sample of
    /// [`Gallery::finger_template_score`]). Seeded; gives up after
    /// `64 · count` draws.
    pub fn sample_finger_template_scores(
        &self,
        collection: &str,
        count: usize,
        seed: u64,
    ) -> Result<Vec<f32>> {
        let params = self.fingers.params;
        Ok(self
            .with_table(collection, |table| {
                let mut ids: Vec<u64> = table.entries.keys().copied().collect();
                ids.sort_unstable();
                let n = ids.len() as u64;
                if n < 2 {
                    return Vec::new();
                }
                let mut rng = SplitMix::new(seed);
                let mut pairs = Vec::with_capacity(count);
                for _ in 0..count.saturating_mul(64) {
                    if pairs.len() == count {
                        break;
                    }
                    let a = &table.entries[&ids[rng.below(n) as usize]];
                    let b = &table.entries[&ids[rng.below(n) as usize]];
                    if a.subject_id != b.subject_id && compatible(a.position, b.position) {
                        pairs.push((Arc::clone(&a.template), Arc::clone(&b.template)));
                    }
                }
                pairs
                    .par_iter()
                    .map_init(|| Matcher::new(params), |m, (a, b)| m.score(a, b))
                    .collect()
            })?
            .unwrap_or_default())
    }
}

impl Table {
    /// Subject `a`'s fingers as probes against subject `b`, fused.
    fn subject_score(&self, params: Params, a: u64, b: u64) -> Option<f32> {
        let probes: Vec<PreparedFinger> = self
            .by_subject
            .get(&a)?
            .iter()
            .map(|id| {
                let e = &self.entries[id];
                PreparedFinger {
                    position: e.position,
                    template: Arc::clone(&e.template),
                    vector: Vec::new(),
                }
            })
            .collect();
        self.by_subject.get(&b)?;
        let mut m = Matcher::new(params);
        Some(fused(&self.score_subject(&mut m, b, &probes)))
    }
}
