//! `biomatch eval lfw-1n`: open-set identification on LFW
//! ([`biomatch_datasets::lfw::Lfw1N`]): every identity with two or more
//! images enrols its first, the others search; identities with one image
//! are enrolled as distractors. Each probe makes a mated search (its mate
//! in the gallery) and a non-mated one (the gallery without its mate).
//!
//! Scores are `f32` cosines of the real face pipeline's embeddings, with
//! the engine's SIMD inner product (the flat index's `f32` kernel). The report
//! holds rank-1, CMC and FNIR at FPIR, and a verification score set — mate
//! scores against every probe–non-mate cosine — whose millions of impostor
//! scores are what `--calibrate` turns into FMR thresholds.

use std::time::Instant;

use anyhow::Result;
use biomatch_datasets::errors::ScoreSets;
use biomatch_datasets::identification::{Identification, score_search};
use biomatch_datasets::lfw::Lfw1N;
use biomatch_engine::vector::dot_f32;
use rayon::prelude::*;
use serde::Serialize;

use super::lfw::{Embedded, LfwArgs, embed_images};
use super::report::{CANDIDATES, IdentificationReport, Report, Verification, finish};

/// The protocol's own numbers (`details` in report.json).
#[derive(Debug, Serialize)]
pub struct Lfw1NDetails {
    /// Images found.
    pub images: usize,
    /// Enrolled identities (gallery size).
    pub gallery: usize,
    /// Enrolled identities that have probes.
    pub mated_identities: usize,
    /// Probes (each one mated and one non-mated search).
    pub probes: usize,
    /// Images where the detector found no face.
    pub no_face: usize,
    /// Images where the detector found several faces.
    pub multi_face: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Runs the protocol, prints a summary, writes the report / calibration.
pub fn eval_lfw_1n(args: &LfwArgs) -> Result<()> {
    let started = Instant::now();
    let protocol = Lfw1N::load(&args.data)?;
    let Embedded {
        vectors,
        no_face,
        multi_face,
    } = embed_images(args, &protocol.images, "lfw-1n")?;
    let gallery: Vec<&[f32]> = protocol
        .gallery
        .iter()
        .map(|&i| vectors[i].as_slice())
        .collect();
    let searches: Vec<_> = protocol
        .probes
        .par_iter()
        .map(|&(image, mate)| {
            let q = &vectors[image];
            let mut scores: Vec<f32> = gallery.iter().map(|g| dot_f32(q, g)).collect();
            let (mated, best_nonmate) = score_search(&scores, mate);
            scores.swap_remove(mate);
            (mated, best_nonmate, scores)
        })
        .collect();
    let mut impostor = Vec::with_capacity(searches.len() * gallery.len());
    let mut mated = Vec::with_capacity(searches.len());
    let mut nonmated = Vec::with_capacity(searches.len());
    for (m, best, scores) in searches {
        mated.push(m);
        nonmated.push(best);
        impostor.extend(scores);
    }
    let genuine: Vec<f32> = mated.iter().map(|m| m.mate_score).collect();
    let sets = ScoreSets::new(genuine, impostor);
    let id = Identification::new(mated, nonmated);
    let name = args.model.embedder.clone();
    let ident = IdentificationReport::new(&name, gallery.len(), &id);
    let verification = Verification::new(&name, &sets, None);
    let details = Lfw1NDetails {
        images: protocol.images.len(),
        gallery: gallery.len(),
        mated_identities: protocol.mated_identities(),
        probes: protocol.probes.len(),
        no_face,
        multi_face,
        seconds: started.elapsed().as_secs_f64(),
    };
    let dataset = format!(
        "LFW 1:N, {} ({} enrolled, {} of them with probes; {} probes)",
        args.data.display(),
        details.gallery,
        details.mated_identities,
        details.probes
    );
    print_summary(&dataset, &ident, &verification, &details, args.json)?;
    let mut report = Report {
        protocol: "lfw-1n".into(),
        dataset,
        models: vec![args.model.detector.clone(), args.model.embedder.clone()],
        verification: vec![verification],
        identification: vec![ident],
        calibration: None,
        details: serde_json::to_value(&details)?,
        plots: vec![],
    };
    finish(
        &mut report,
        &args.output,
        &args.model,
        &sets,
        Some((&id, details.gallery)),
    )
}

/// Prints the identification and verification summary (table or JSON).
pub fn print_summary(
    dataset: &str,
    ident: &IdentificationReport,
    verification: &Verification,
    details: &impl Serialize,
    json: bool,
) -> Result<()> {
    if json {
        let all = serde_json::json!({
            "dataset": dataset,
            "rank1": ident.rank1,
            "cmc": ident.cmc,
            "fnir_at_fpir_rank1": ident.fnir_at_fpir_rank1,
            "fnir_at_fpir": ident.fnir_at_fpir,
            "eer": verification.eer,
            "fnmr_at_fmr": verification.fnmr_at_fmr,
            "details": details,
        });
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!("{dataset} — {}", ident.name);
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| searches | {} mated, {} non-mated, gallery {} |",
        ident.mated, ident.nonmated, ident.gallery
    );
    println!("| rank-1 | {:.2} % |", ident.rank1 * 100.0);
    println!(
        "| rank-{CANDIDATES} | {:.2} % |",
        ident.cmc[CANDIDATES - 1] * 100.0
    );
    for at in &ident.fnir_at_fpir_rank1 {
        println!(
            "| FNIR @ FPIR = {:e} (rank 1) | {:.2} % (score ≥ {:.4}) |",
            at.fpir_target,
            at.fnir * 100.0,
            at.threshold
        );
    }
    println!(
        "| EER (1:1: mate scores vs impostor scores) | {:.3} % |",
        verification.eer.eer * 100.0
    );
    for at in &verification.fnmr_at_fmr {
        println!(
            "| FNMR @ FMR = {:e} | {:.2} % (score ≥ {:.4}) |",
            at.fmr_target,
            at.fnmr * 100.0,
            at.threshold
        );
    }
    Ok(())
}
