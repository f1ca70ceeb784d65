//! `biomatch finger`: the fingerprint extractor on one image.
//!
//! * `finger extract IMAGE [--dpi 500] [--iso OUT.iso]` prints one JSON
//!   object (quality, minutiae) and writes the ISO/IEC 19794-2 record;
//! * `finger render IMAGE --out OUT.png` draws the foreground, the ridge
//!   skeleton and the minutiae with their directions on the image.

use std::path::PathBuf;

use anyhow::{Context, Result};
use biomatch_engine::finger::extract::render;
use biomatch_engine::finger::{ExtractParams, Extractor};
use biomatch_engine::imaging::{DecodeLimits, GreyImage, decode_grey};
use clap::Subcommand;

/// Fingerprint tools.
#[derive(Debug, Subcommand)]
pub enum FingerCommand {
    /// Extract minutiae from a finger image; print quality and minutiae as JSON.
    Extract {
        /// Image file (PNG, BMP, TIFF, JPEG; grey or colour).
        image: PathBuf,
        /// Scan resolution in dots per inch.
        #[arg(long, default_value_t = 500.0)]
        dpi: f32,
        /// Write the ISO/IEC 19794-2:2005 record here.
        #[arg(long)]
        iso: Option<PathBuf>,
        /// Refuse images whose quality score is below this (0 to 100).
        #[arg(long, default_value_t = ExtractParams::default().min_quality)]
        min_quality: u8,
    },
    /// Draw the extraction on the image (foreground, skeleton, minutiae) as a PNG.
    Render {
        /// Image file.
        image: PathBuf,
        /// Scan resolution in dots per inch.
        #[arg(long, default_value_t = 500.0)]
        dpi: f32,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// Enlarge the picture this many times (1 to 8).
        #[arg(long, default_value_t = 2)]
        zoom: u32,
    },
}

fn read_image(path: &PathBuf) -> Result<GreyImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode_grey(&bytes, &DecodeLimits::default()).with_context(|| path.display().to_string())
}

/// Runs a `finger` subcommand.
pub fn run(command: &FingerCommand) -> Result<()> {
    match command {
        FingerCommand::Extract {
            image,
            dpi,
            iso,
            min_quality,
        } => {
            let extractor = Extractor::new(ExtractParams {
                min_quality: *min_quality,
                ..ExtractParams::default()
            });
            let img = read_image(image)?;
            let started = std::time::Instant::now();
            let e = extractor
                .extract(&img, *dpi)
                .with_context(|| image.display().to_string())?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if let Some(out) = iso {
                std::fs::write(out, e.record.to_bytes()?)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            let r = &e.record;
            println!(
                "{}",
                serde_json::json!({
                    "image": image,
                    "width": r.width,
                    "height": r.height,
                    "dpi": dpi,
                    "quality": e.quality,
                    "extract_ms": ms,
                    "minutiae": r.views[0].minutiae,
                })
            );
            Ok(())
        }
        FingerCommand::Render {
            image,
            dpi,
            out,
            zoom,
        } => {
            let extractor = Extractor::new(ExtractParams::default());
            let img = read_image(image)?;
            let analysis = extractor
                .analyse(&img, *dpi)
                .with_context(|| image.display().to_string())?;
            render(&img, &analysis, *zoom)
                .save(out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}: {} minutiae, quality {:?}",
                out.display(),
                analysis.extraction.record.views[0].minutiae.len(),
                analysis.extraction.quality
            );
            Ok(())
        }
    }
}
