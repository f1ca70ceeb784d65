//! Fingerprints: minutiae extraction from images ([`extract`]), minutiae
//! records ([`iso19794`]), the minutiae matcher
//! ([`matcher`], on the SIMD [`kernel`]) and a fixed-length vector per
//! finger for the first stage of 1:N search ([`vector`]).
//!
//! A finger template is a minutiae record (ISO/IEC 19794-2:2005 or ANSI
//! INCITS 378-2004, one view used) prepared by an [`Encoder`] into
//! rotation- and translation-invariant local structures, which a
//! [`Matcher`] compares in `[0, 1]`.

pub mod extract;
pub mod iso19794;
pub mod kernel;
pub mod matcher;
pub mod vector;

pub use extract::{Analysis, ExtractParams, Extraction, Extractor, FingerQuality};
pub use iso19794::{FingerView, Format, Minutia, MinutiaKind, MinutiaeRecord};
pub use matcher::{Encoder, Matcher, Params, Template};

#[cfg(test)]
pub(crate) mod tests {
    //! Access to the FVC2002 records in `../shared/datasets` for tests:
    //! missing data fails under `CI=true` and skips otherwise.

    use std::path::PathBuf;

    /// The datasets folder (`BIOMATCH_DATASETS` or `../shared/datasets`).
    pub(crate) fn datasets() -> PathBuf {
        std::env::var_os("BIOMATCH_DATASETS").map_or_else(
            || crate::embed::tests::repo_root().join("../shared/datasets"),
            PathBuf::from,
        )
    }

    /// The bytes of FVC2002 `DB{db}_B/{finger}_{impression}.iso`.
    pub(crate) fn fvc_record(db: u32, finger: u32, impression: u32) -> Option<Vec<u8>> {
        let path = datasets().join(format!("fvc2002/DB{db}_B/{finger}_{impression}.iso"));
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true and {}: {e}", path.display())
            }
            Err(e) => {
                eprintln!("SKIPPED: {}: {e}", path.display());
                None
            }
        }
    }
}
