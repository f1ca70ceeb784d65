//! From kept template pairs to the job's report: subject pairs, fusion,
//! clusters, and the three output files.
//!
//! * `pairs.jsonl`: one subject pair per line, most alike first (ties by
//!   subject ids): `{"a", "b", "score": fused, "modalities": {collection:
//!   {"score", "z", "match"}}}`. For a minutiae collection `score` and `z`
//!   are the subjects' fused finger score (as verify fuses fingers) and
//!   `match` says whether the scan kept one of their finger pairs (absent
//!   when the collection was not scanned).
//! * `clusters.jsonl`: connected groups of reported subjects, largest first:
//!   `{"cluster", "size", "subjects", "pairs", "max_score"}`.
//! * `summary.json`: [`Summary`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::gallery::{Gallery, is_minutiae};
use crate::storage::catalog::Catalog;
use crate::storage::fs::AtomicFile;

use super::{Bins, CollectionPlan, ImpostorStats, JobParams, ScanStats};

/// Subject pairs sampled per minutiae collection for its z-scores.
const FINGER_SAMPLES: usize = 20_000;

/// One collection's part of a reported pair.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ModalityScore {
    /// Best score of any template pair of the two subjects.
    pub score: f32,
    /// As an impostor z-score.
    pub z: f64,
    /// Whether it reaches the collection's threshold (scanned collections).
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub matched: Option<bool>,
}

/// A reported subject pair.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SubjectPair {
    /// External id of one subject (the lower catalog id).
    pub a: String,
    /// External id of the other.
    pub b: String,
    /// Fused score (module docs of [`super`]).
    pub score: f64,
    /// Per collection.
    pub modalities: BTreeMap<String, ModalityScore>,
}

/// A collection's line in the summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectionSummary {
    /// Collection name.
    pub name: String,
    /// `face` or `finger`.
    pub modality: String,
    /// Threshold used (scanned collections).
    pub threshold: Option<f32>,
    /// How it was set.
    pub method: Option<super::ThresholdMethod>,
    /// Impostor statistics.
    pub impostor: ImpostorStats,
    /// Template pairs kept by the scan.
    pub kept_template_pairs: usize,
    /// Score histograms of the sampled impostor pairs (made when the job
    /// was planned) and of the kept pairs.
    pub histogram: Histogram,
}

/// The two score histograms of a collection.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// Sampled impostor pairs.
    pub impostor: Bins,
    /// Kept template pairs.
    pub kept: Bins,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Job id.
    pub job: u64,
    /// Output directory.
    pub out: String,
    /// Subject pairs reported.
    pub pairs: usize,
    /// Clusters.
    pub clusters: usize,
    /// Subjects in some cluster.
    pub subjects_in_clusters: usize,
    /// Per collection.
    pub collections: Vec<CollectionSummary>,
    /// Tile pairs in the job.
    pub tiles: usize,
    /// Tile pairs finished by earlier runs.
    pub tiles_resumed: usize,
    /// Template pairs compared in all.
    pub comparisons: u64,
    /// Template pairs compared by this run.
    pub comparisons_this_run: u64,
    /// Seconds this run scanned.
    pub scan_s: f64,
    /// `comparisons_this_run / scan_s`.
    pub comparisons_per_s: f64,
    /// Seconds this run took in all (scan, fusion, output).
    pub run_s: f64,
}

impl Summary {
    /// The job's stored result: where the files are and the headline counts.
    pub fn result(&self) -> serde_json::Value {
        let out = Path::new(&self.out);
        json!({
            "out": self.out,
            "pairs_file": out.join("pairs.jsonl"),
            "clusters_file": out.join("clusters.jsonl"),
            "summary_file": out.join("summary.json"),
            "pairs": self.pairs,
            "clusters": self.clusters,
            "comparisons": self.comparisons,
            "comparisons_per_s": self.comparisons_per_s,
        })
    }
}

/// Union-find over dense indexes.
struct Dsu(Vec<usize>);

impl Dsu {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
        }
    }
}

fn better(plan: &CollectionPlan, a: f32, b: f32) -> bool {
    if plan.higher_is_better { a > b } else { a < b }
}

/// Builds the report from the job's kept pairs and writes it.
pub(super) fn finish(
    gallery: &Gallery,
    catalog: &Catalog,
    id: u64,
    params: &JobParams,
    scan: &ScanStats,
) -> Result<Summary> {
    let started = std::time::Instant::now();
    let kept = catalog.kept_pairs(id)?;
    let plans: HashMap<u64, &CollectionPlan> = params.plan.iter().map(|p| (p.id, p)).collect();
    // Best score per (subject pair, collection).
    let mut best: BTreeMap<(u64, u64), BTreeMap<u64, f32>> = BTreeMap::new();
    let mut kept_scores: HashMap<u64, Vec<f32>> = HashMap::new();
    for p in &kept {
        let plan = plans.get(&p.collection_id).ok_or_else(|| {
            Error::invalid(
                "job",
                format!("job {id}: pair of unplanned collection {}", p.collection_id),
            )
        })?;
        kept_scores
            .entry(p.collection_id)
            .or_default()
            .push(p.score);
        if !plan.matches(p.score) {
            continue;
        }
        let key = (p.subject_a.min(p.subject_b), p.subject_a.max(p.subject_b));
        let slot = best.entry(key).or_default();
        match slot.get(&p.collection_id) {
            Some(&s) if !better(plan, p.score, s) => {}
            _ => {
                slot.insert(p.collection_id, p.score);
            }
        }
    }
    let subject_ids: Vec<u64> = {
        let mut v: Vec<u64> = best.keys().flat_map(|&(a, b)| [a, b]).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let names = catalog.external_ids(&subject_ids)?;
    let snapshot = gallery.snapshot();
    // Minutiae collections: impostor statistics for their z-scores.
    let mut finger_stats = Vec::new();
    for info in snapshot.collections().filter(|c| is_minutiae(&c.spec)) {
        let scores =
            gallery.sample_finger_scores(&info.spec.name, FINGER_SAMPLES, 0x000D_EDF1 ^ info.id)?;
        if scores.len() >= 2 {
            finger_stats.push((info.spec.name.clone(), super::plan::stats(&scores)));
        }
    }
    let mut pairs = Vec::new();
    for (&(a, b), scores) in &best {
        let (Some(name_a), Some(name_b)) = (names.get(&a), names.get(&b)) else {
            continue; // deleted since the scan
        };
        let mut modalities = BTreeMap::new();
        // Read from the catalog only if a collection needs scoring.
        let mut records = None;
        // Vector collections here; minutiae collections below.
        for plan in params.plan.iter().filter(|p| p.prefilter.is_none()) {
            let score = match scores.get(&plan.id) {
                Some(&s) => Some(s),
                // Not kept in this collection: score both subjects' templates.
                None => {
                    let (ra, rb) = match &records {
                        Some(r) => r,
                        None => records.insert((gallery.get(name_a)?, gallery.get(name_b)?)),
                    };
                    match (ra, rb) {
                        (Some(ra), Some(rb)) => {
                            let (_, index) = snapshot.collection(&plan.name)?;
                            let ids_b: Vec<u64> = rb
                                .templates
                                .iter()
                                .filter(|t| t.collection == plan.name)
                                .map(|t| t.id)
                                .collect();
                            let mut s_best: Option<f32> = None;
                            for t in ra.templates.iter().filter(|t| t.collection == plan.name) {
                                for hit in index.score(&t.vector, &ids_b)?.into_iter().flatten() {
                                    if s_best.is_none_or(|s| better(plan, hit.score, s)) {
                                        s_best = Some(hit.score);
                                    }
                                }
                            }
                            s_best
                        }
                        _ => None,
                    }
                }
            };
            if let Some(score) = score {
                modalities.insert(
                    plan.name.clone(),
                    ModalityScore {
                        score,
                        z: plan.z(score),
                        matched: Some(plan.matches(score)),
                    },
                );
            }
        }
        // Fingers: the subjects' fused finger score (all their fingers, as
        // verify fuses them); `match` says whether the scan kept one of
        // their finger pairs.
        for (name, st) in &finger_stats {
            if let Some(score) = gallery.subject_finger_score(name, a, b)? {
                let z = (f64::from(score) - st.mean) / st.sd.max(1e-12);
                let matched = params
                    .plan
                    .iter()
                    .find(|p| &p.name == name)
                    .map(|p| scores.contains_key(&p.id));
                modalities.insert(name.clone(), ModalityScore { score, z, matched });
            }
        }
        let m = modalities.len().max(1) as f64;
        let fused = modalities.values().map(|s| s.z).sum::<f64>() / m.sqrt();
        pairs.push(SubjectPair {
            a: name_a.clone(),
            b: name_b.clone(),
            score: fused,
            modalities,
        });
    }
    pairs.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then_with(|| x.a.cmp(&y.a))
            .then_with(|| x.b.cmp(&y.b))
    });
    let clusters = clusters(&pairs);

    let mut collections: Vec<CollectionSummary> = params
        .plan
        .iter()
        .map(|plan| {
            let kept = kept_scores.get(&plan.id).map_or(&[][..], Vec::as_slice);
            CollectionSummary {
                name: plan.name.clone(),
                modality: plan.modality.clone(),
                threshold: Some(plan.threshold),
                method: Some(plan.method),
                impostor: plan.impostor,
                kept_template_pairs: kept.len(),
                histogram: Histogram {
                    impostor: plan.impostor_histogram.clone(),
                    kept: Bins::of(kept),
                },
            }
        })
        .collect();
    for (name, st) in finger_stats {
        if params.plan.iter().any(|p| p.name == name) {
            continue;
        }
        collections.push(CollectionSummary {
            name,
            modality: "finger".into(),
            threshold: None,
            method: None,
            impostor: st,
            kept_template_pairs: 0,
            histogram: Histogram::default(),
        });
    }
    let out = &params.request.out;
    let mut summary = Summary {
        job: id,
        out: out.display().to_string(),
        pairs: pairs.len(),
        clusters: clusters.len(),
        subjects_in_clusters: clusters.iter().map(|c| c.1.len()).sum(),
        collections,
        tiles: scan.tiles_total,
        tiles_resumed: scan.tiles_resumed,
        comparisons: scan.comparisons_total,
        comparisons_this_run: scan.comparisons_run,
        scan_s: scan.scan_s,
        comparisons_per_s: scan.comparisons_run as f64 / scan.scan_s.max(1e-9),
        run_s: 0.0,
    };
    summary.run_s = scan.scan_s + started.elapsed().as_secs_f64();
    write_report(out, &pairs, &clusters, &summary)?;
    Ok(summary)
}

/// Clusters as (max fused score, subjects sorted, pair count), largest
/// first, then by best score, then by first subject.
fn clusters(pairs: &[SubjectPair]) -> Vec<(f64, Vec<String>, usize)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    for p in pairs {
        for s in [p.a.as_str(), p.b.as_str()] {
            index.entry(s).or_insert_with(|| {
                names.push(s);
                names.len() - 1
            });
        }
    }
    let mut dsu = Dsu((0..names.len()).collect());
    for p in pairs {
        dsu.union(index[p.a.as_str()], index[p.b.as_str()]);
    }
    let mut groups: HashMap<usize, (f64, Vec<String>, usize)> = HashMap::new();
    for p in pairs {
        let root = dsu.find(index[p.a.as_str()]);
        let g = groups
            .entry(root)
            .or_insert((f64::NEG_INFINITY, Vec::new(), 0));
        g.0 = g.0.max(p.score);
        g.2 += 1;
    }
    for (i, name) in names.iter().enumerate() {
        let root = dsu.find(i);
        groups
            .get_mut(&root)
            .expect("every name is in a pair")
            .1
            .push((*name).to_string());
    }
    let mut out: Vec<_> = groups.into_values().collect();
    for g in &mut out {
        g.1.sort();
    }
    out.sort_by(|x, y| {
        y.1.len()
            .cmp(&x.1.len())
            .then_with(|| y.0.total_cmp(&x.0))
            .then_with(|| x.1.cmp(&y.1))
    });
    out
}

fn write_jsonl<T: Serialize>(path: &Path, rows: impl Iterator<Item = T>) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    for row in rows {
        let mut line = serde_json::to_vec(&row)
            .map_err(|e| Error::invalid("report", format!("cannot encode a line: {e}")))?;
        line.push(b'\n');
        f.write_all(&line)?;
    }
    f.commit()
}

/// Writes `pairs.jsonl`, `clusters.jsonl` and `summary.json` into `out`
/// (created if needed), each atomically.
fn write_report(
    out: &Path,
    pairs: &[SubjectPair],
    clusters: &[(f64, Vec<String>, usize)],
    summary: &Summary,
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_jsonl(&out.join("pairs.jsonl"), pairs.iter())?;
    write_jsonl(
        &out.join("clusters.jsonl"),
        clusters
            .iter()
            .enumerate()
            .map(|(i, (max, subjects, n))| {
                json!({"cluster": i, "size": subjects.len(), "subjects": subjects, "pairs": n, "max_score": max})
            }),
    )?;
    let mut json = serde_json::to_vec_pretty(summary)
        .map_err(|e| Error::invalid("report", format!("cannot encode the summary: {e}")))?;
    json.push(b'\n');
    crate::storage::fs::write_atomic(&out.join("summary.json"), &json)
}
