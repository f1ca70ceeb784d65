//! `biomatch bench finger`: the minutiae matcher's speed, and two-stage
//! 1:N search against exhaustive minutiae matching.
//!
//! Data: FVC-style sets of minutiae records. Fingers `101..=105` of each
//! set are the enrolled mates (first impression in the gallery, the other
//! impressions are probes); the impressions of fingers `106..=110` are only
//! sources of [`distractor`]s, so no distractor is a mate of any probe.
//! The gallery is the mates plus `--distractors` generated fingers.
//!
//! * **Exhaustive**: every probe against every gallery template with the
//!   minutiae matcher; rank 1 is correct when the best template is the
//!   probe's finger.
//! * **Two-stage**: the gallery's fixed-length vectors
//!   ([`biomatch_engine::finger::vector`]) live in a flat cosine index; the
//!   `--shortlist` best rows are re-ranked by the minutiae matcher.
//!
//! Reported: shortlist recall (the mate survives the first stage), rank-1
//! accuracy of both, time per probe on one core (wall time × threads ÷
//! probes), and the speed-up.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use biomatch_datasets::fvc::{FvcSet, distractor};
use biomatch_engine::finger::{Encoder, FingerView, Matcher, Params, Template, vector};
use biomatch_engine::index::flat::{FlatConfig, FlatIndex};
use biomatch_engine::index::{Dtype, Metric};
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

/// `biomatch bench finger` arguments.
#[derive(Debug, clap::Args)]
pub struct FingerArgs {
    /// Folder with the FVC sets.
    #[arg(long, default_value = "../shared/datasets/fvc2002")]
    pub data: PathBuf,
    /// Generated distractor fingers in the gallery.
    #[arg(long, default_value_t = 10_000)]
    pub distractors: usize,
    /// First-stage shortlist length.
    #[arg(long, default_value_t = 300)]
    pub shortlist: usize,
    /// Seed of the distractor generator.
    #[arg(long, default_value_t = 2002)]
    pub seed: u64,
    /// Worker threads; default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `bench finger` measured.
#[derive(Debug, Serialize)]
pub struct FingerReport {
    /// SIMD backend of the cylinder kernel.
    pub backend: &'static str,
    /// CPU model.
    pub cpu: String,
    /// Worker threads.
    pub threads: usize,
    /// Comparisons per second on one core over all pairs of every other real record.
    pub comparisons_per_s: f64,
    /// Median minutiae per real record.
    pub minutiae_median: usize,
    /// Templates in the 1:N gallery (mates + distractors).
    pub gallery: usize,
    /// Enrolled mates.
    pub mates: usize,
    /// Probes.
    pub probes: usize,
    /// First-stage shortlist length.
    pub shortlist: usize,
    /// Fraction of probes whose mate is in the shortlist.
    pub shortlist_recall: f64,
    /// Rank-1 accuracy of exhaustive minutiae matching.
    pub rank1_exhaustive: f64,
    /// Rank-1 accuracy of the two-stage search.
    pub rank1_two_stage: f64,
    /// Two-stage rank-1 as a fraction of exhaustive rank-1.
    pub rank1_ratio: f64,
    /// Exhaustive search time per probe on one core, ms.
    pub exhaustive_ms: f64,
    /// Two-stage time per probe on one core, ms (vector scan + re-ranking).
    pub two_stage_ms: f64,
    /// Of which the vector scan, ms.
    pub first_stage_ms: f64,
    /// `exhaustive_ms / two_stage_ms`.
    pub speedup: f64,
    /// Heap bytes of a prepared template (mean over the gallery).
    pub template_bytes: usize,
}

struct Entry {
    finger: FingerId,
    template: Template,
}

/// A finger (set name, finger number).
type FingerId = (String, u32);

/// Every record of a set: finger, impression number, first view.
fn load(set: &FvcSet) -> Result<Vec<(FingerId, u32, FingerView)>> {
    set.impressions
        .iter()
        .map(|imp| {
            Ok((
                (set.name.clone(), imp.finger),
                imp.impression,
                imp.first_view()?,
            ))
        })
        .collect()
}

/// Runs the benchmark.
pub fn run(args: &FingerArgs) -> Result<FingerReport> {
    let (pool, threads) = super::search_pool(args.threads)?;
    let params = Params::default();
    let encoder = Encoder::new(params);
    let mut views = Vec::new();
    for set in FvcSet::load_all(&args.data)? {
        views.extend(load(&set)?);
    }
    let is_mate = |f: u32| (101..=105).contains(&f);

    // Matcher speed: all pairs of real records, one core, fastest of three.
    let real: Vec<Template> = views.iter().map(|(_, _, v)| encoder.encode(v)).collect();
    let mut counts: Vec<usize> = real.iter().map(Template::len).collect();
    counts.sort_unstable();
    // Every other record: all sets, 160 templates for 320 records.
    let sample: Vec<&Template> = real.iter().step_by(2).collect();
    let (_, comparisons_per_s) = crate::eval::fvc::score_all_pairs(&sample, params);

    // The 1:N gallery.
    let mut gallery: Vec<Entry> = Vec::new();
    let mut probes: Vec<Entry> = Vec::new();
    for ((finger, imp, _), t) in views.iter().zip(&real) {
        if !is_mate(finger.1) {
            continue;
        }
        let e = Entry {
            finger: finger.clone(),
            template: t.clone(),
        };
        if *imp == 1 {
            gallery.push(e)
        } else {
            probes.push(e)
        }
    }
    let mates = gallery.len();
    let sources: Vec<&(FingerId, u32, FingerView)> =
        views.iter().filter(|(f, _, _)| !is_mate(f.1)).collect();
    anyhow::ensure!(
        !sources.is_empty() && mates > 0,
        "no fingers 101–105 or 106–110 in {}",
        args.data.display()
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let generated: Vec<(usize, FingerView)> = (0..args.distractors)
        .map(|_| {
            let s = rng.random_range(0..sources.len());
            (s, distractor(&sources[s].2, &mut rng))
        })
        .collect();
    let distractors: Vec<Entry> = pool.install(|| {
        generated
            .par_iter()
            .map(|(s, v)| Entry {
                finger: sources[*s].0.clone(),
                template: encoder.encode(v),
            })
            .collect()
    });
    gallery.extend(distractors);
    let template_bytes = gallery
        .iter()
        .map(|e| e.template.heap_bytes())
        .sum::<usize>()
        / gallery.len();

    // First stage: a flat cosine index of the fixed-length vectors.
    let dir = tempfile::tempdir()?;
    let mut index = FlatIndex::create(
        dir.path(),
        FlatConfig::new(vector::DIM, Dtype::F32, Metric::Cosine),
    )?;
    let ids: Vec<u64> = (0..gallery.len() as u64).collect();
    let vectors: Vec<f32> = pool.install(|| {
        gallery
            .par_iter()
            .flat_map_iter(|e| vector::fixed_length(&e.template))
            .collect()
    });
    index.append_batch(&ids, &vectors)?;
    let snapshot = index.snapshot();

    let best = |m: &mut Matcher, probe: &Template, candidates: &mut dyn Iterator<Item = usize>| {
        candidates
            .map(|g| (m.score(probe, &gallery[g].template), g))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, g)| g)
    };

    let started = Instant::now();
    let exhaustive: Vec<bool> = pool.install(|| {
        probes
            .par_iter()
            .map_init(
                || Matcher::new(params),
                |m, p| {
                    best(m, &p.template, &mut (0..gallery.len()))
                        .is_some_and(|g| gallery[g].finger == p.finger)
                },
            )
            .collect()
    });
    let exhaustive_s = started.elapsed().as_secs_f64();

    // The scan and the re-ranking run one probe per thread, as the index
    // is used by the server (single query, pool of searches).
    let started = Instant::now();
    let shortlists: Vec<Vec<usize>> = pool.install(|| {
        probes
            .par_iter()
            .map(|p| -> Result<Vec<usize>> {
                let q = vector::fixed_length(&p.template);
                Ok(snapshot
                    .search(&q, args.shortlist)?
                    .iter()
                    .map(|h| h.id as usize)
                    .collect())
            })
            .collect::<Result<_>>()
    })?;
    let first_stage_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let two_stage: Vec<bool> = pool.install(|| {
        probes
            .par_iter()
            .zip(&shortlists)
            .map_init(
                || Matcher::new(params),
                |m, (p, list)| {
                    best(m, &p.template, &mut list.iter().copied())
                        .is_some_and(|g| gallery[g].finger == p.finger)
                },
            )
            .collect()
    });
    let two_stage_s = first_stage_s + started.elapsed().as_secs_f64();
    let recall = probes
        .iter()
        .zip(&shortlists)
        .filter(|(p, list)| {
            list.iter()
                .any(|&g| g < mates && gallery[g].finger == p.finger)
        })
        .count();

    let n = probes.len() as f64;
    let per_probe_ms = |s: f64| s * 1e3 * threads as f64 / n;
    let frac = |v: &[bool]| v.iter().filter(|&&ok| ok).count() as f64 / n;
    let (r1e, r1t) = (frac(&exhaustive), frac(&two_stage));
    Ok(FingerReport {
        backend: biomatch_engine::vector::backend_name(),
        cpu: super::cpu_model(),
        threads,
        comparisons_per_s,
        minutiae_median: counts[counts.len() / 2],
        gallery: gallery.len(),
        mates,
        probes: probes.len(),
        shortlist: args.shortlist,
        shortlist_recall: recall as f64 / n,
        rank1_exhaustive: r1e,
        rank1_two_stage: r1t,
        rank1_ratio: if r1e > 0.0 { r1t / r1e } else { f64::NAN },
        exhaustive_ms: per_probe_ms(exhaustive_s),
        two_stage_ms: per_probe_ms(two_stage_s),
        first_stage_ms: per_probe_ms(first_stage_s),
        speedup: exhaustive_s / two_stage_s,
        template_bytes,
    })
}

/// Prints the report as a table.
pub fn print(r: &FingerReport) {
    println!(
        "minutiae matcher, {} kernels, {} ({} threads)",
        r.backend, r.cpu, r.threads
    );
    println!(
        "  1:1 comparisons per second per core: {:.0} (median {} minutiae)",
        r.comparisons_per_s, r.minutiae_median
    );
    println!(
        "1:N gallery {} ({} mates + {} distractors), {} probes, shortlist {}",
        r.gallery,
        r.mates,
        r.gallery - r.mates,
        r.probes,
        r.shortlist
    );
    println!("{:12} {:>8} {:>14}", "search", "rank-1", "ms/probe/core");
    println!(
        "{:12} {:>7.2}% {:>14.2}",
        "exhaustive",
        r.rank1_exhaustive * 100.0,
        r.exhaustive_ms
    );
    println!(
        "{:12} {:>7.2}% {:>14.2}",
        "two-stage",
        r.rank1_two_stage * 100.0,
        r.two_stage_ms
    );
    println!(
        "shortlist recall {:.2}%, rank-1 ratio {:.3}, speed-up {:.1}x (first stage {:.2} ms)",
        r.shortlist_recall * 100.0,
        r.rank1_ratio,
        r.speedup,
        r.first_stage_ms
    );
}
