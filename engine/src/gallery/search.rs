//! Searching the gallery: 1:1 verify, 1:N identify, and the consistency
//! check between catalog and indexes.
//!
//! Searches run on one [`super::GallerySnapshot`]; subject names are then
//! read from the catalog, so a subject deleted in between simply drops out
//! of the result.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::Hit;
use crate::storage::catalog::TemplateRef;

use super::{Gallery, GalleryCounts, Position};

/// A probe template: a vector in one collection's embedding space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Collection name.
    pub collection: String,
    /// The embedding.
    pub vector: Vec<f32>,
}

/// How many subjects an identification returns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Search {
    /// The `k` best subjects.
    TopK(usize),
    /// Every subject scoring at least this (at most this distance for L2).
    Threshold(f32),
}

/// One subject found by [`Gallery::identify`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubjectHit {
    /// External subject id.
    pub subject: String,
    /// Catalog id of the subject.
    pub subject_id: u64,
    /// Score of the subject's best template.
    pub score: f32,
    /// That template.
    pub template_id: u64,
}

/// A probe's score against one of the subject's templates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateScore {
    /// Which probe (index into the probes given).
    pub probe: usize,
    /// The template.
    pub template_id: u64,
    /// Its collection.
    pub collection: String,
    /// Its position.
    pub position: Position,
    /// The score.
    pub score: f32,
}

/// The best score per collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionScore {
    /// Collection name.
    pub collection: String,
    /// Best score of any probe against any of the subject's templates in
    /// it; `None` if the subject has none there.
    pub best: Option<f32>,
}

/// Result of [`Gallery::verify`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// External subject id.
    pub subject: String,
    /// Every probe against every template of the subject in its collection.
    pub templates: Vec<TemplateScore>,
    /// Best score per probed collection.
    pub collections: Vec<CollectionScore>,
}

/// Agreement of one collection's index with the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CollectionCheck {
    /// Collection name.
    pub collection: String,
    /// Templates in the catalog.
    pub catalog_templates: u64,
    /// Live rows in the index.
    pub index_rows: u64,
    /// Catalog templates the index lacks (at most 100 listed).
    pub missing_from_index: Vec<u64>,
    /// Index rows the catalog lacks (at most 100 listed).
    pub unknown_to_catalog: Vec<u64>,
}

impl CollectionCheck {
    /// Whether index and catalog hold exactly the same templates.
    pub fn agrees(&self) -> bool {
        self.missing_from_index.is_empty() && self.unknown_to_catalog.is_empty()
    }
}

/// Whether `a` is a better score than `b` under a metric.
fn better(higher_is_better: bool, a: f32, b: f32) -> bool {
    if higher_is_better { a > b } else { a < b }
}

impl Gallery {
    /// Enrolled subjects and templates per collection (latest snapshot).
    pub fn counts(&self) -> GalleryCounts {
        self.snapshot().counts()
    }

    /// 1:1 verification: every probe against every template the subject
    /// has in the probe's collection, with the best score per collection.
    pub fn verify(&self, subject: &str, probes: &[Probe]) -> Result<Verification> {
        let snap = self.snapshot();
        let templates = self
            .readers
            .with(|c| c.subject_templates(subject))?
            .ok_or_else(|| Error::UnknownSubject {
                subject: subject.to_string(),
            })?
            .templates;
        let mut scores = Vec::new();
        let mut best: Vec<CollectionScore> = Vec::new();
        for (p, probe) in probes.iter().enumerate() {
            let (info, index) = snap.collection(&probe.collection)?;
            let mine: Vec<&TemplateRef> = templates
                .iter()
                .filter(|t| t.collection_id == info.id)
                .collect();
            let ids: Vec<u64> = mine.iter().map(|t| t.id).collect();
            let hits = index.score(&probe.vector, &ids)?;
            let higher = info.spec.metric.higher_is_better();
            let slot = match best.iter().position(|b| b.collection == probe.collection) {
                Some(i) => i,
                None => {
                    best.push(CollectionScore {
                        collection: probe.collection.clone(),
                        best: None,
                    });
                    best.len() - 1
                }
            };
            for (t, hit) in mine.iter().zip(hits) {
                // A template missing from the snapshot was written or
                // removed after it was taken.
                let Some(hit) = hit else { continue };
                scores.push(TemplateScore {
                    probe: p,
                    template_id: t.id,
                    collection: probe.collection.clone(),
                    position: t.position,
                    score: hit.score,
                });
                let b = &mut best[slot].best;
                if b.is_none_or(|b| better(higher, hit.score, b)) {
                    *b = Some(hit.score);
                }
            }
        }
        Ok(Verification {
            subject: subject.to_string(),
            templates: scores,
            collections: best,
        })
    }

    /// 1:N identification in one collection: subjects ranked by their best
    /// template.
    pub fn identify(&self, probe: &Probe, search: Search) -> Result<Vec<SubjectHit>> {
        let snap = self.snapshot();
        let (info, index) = snap.collection(&probe.collection)?;
        let hits: Vec<Hit> = match search {
            // Enough template hits to hold k distinct subjects.
            Search::TopK(k) => {
                index.search(&probe.vector, k.saturating_mul(info.max_per_subject.max(1)))?
            }
            Search::Threshold(t) => index.search_threshold(&probe.vector, t)?,
        };
        // Hits are best first: the first hit of a subject is its best.
        let mut seen = HashSet::new();
        let mut best: Vec<Hit> = hits.into_iter().filter(|h| seen.insert(h.label)).collect();
        if let Search::TopK(k) = search {
            best.truncate(k);
        }
        let labels: Vec<u64> = best.iter().map(|h| h.label).collect();
        let names: HashMap<u64, String> = self.readers.with(|c| c.external_ids(&labels))?;
        Ok(best
            .into_iter()
            .filter_map(|h| {
                names.get(&h.label).map(|name| SubjectHit {
                    subject: name.clone(),
                    subject_id: h.label,
                    score: h.score,
                    template_id: h.id,
                })
            })
            .collect())
    }

    /// Compares every collection's index with the catalog, template by
    /// template. Run it with no writer active (writes in between show up as
    /// differences).
    pub fn check_consistency(&self) -> Result<Vec<CollectionCheck>> {
        let snap = self.snapshot();
        let mut checks = Vec::new();
        for (info, index) in &snap.collections {
            let mut catalog_ids = Vec::new();
            self.readers.with(|c| {
                c.for_each_template(info.id, 0, u64::MAX, info.spec.dim, |id, _, _| {
                    catalog_ids.push(id);
                    Ok(())
                })
            })?;
            let index_ids: Vec<u64> = index.ids().collect();
            let (missing, unknown) = sorted_difference(&catalog_ids, &index_ids);
            checks.push(CollectionCheck {
                collection: info.spec.name.clone(),
                catalog_templates: catalog_ids.len() as u64,
                index_rows: index_ids.len() as u64,
                missing_from_index: missing,
                unknown_to_catalog: unknown,
            });
        }
        Ok(checks)
    }
}

/// Elements only in `a` and only in `b` (both sorted), at most 100 each.
fn sorted_difference(a: &[u64], b: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                only_a.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                only_b.push(*y);
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
    only_a.truncate(100);
    only_b.truncate(100);
    (only_a, only_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_difference_lists_both_sides() {
        assert_eq!(
            sorted_difference(&[1, 2, 4, 7], &[2, 3, 4, 8, 9]),
            (vec![1, 7], vec![3, 8, 9])
        );
        assert_eq!(sorted_difference(&[], &[]), (vec![], vec![]));
    }
}
