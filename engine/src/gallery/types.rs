//! The gallery's vocabulary: modalities, template positions, collections,
//! enrollment inputs and the records read back.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vector::{Dtype, Metric};

/// What a template was taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// A face image.
    Face,
    /// A fingerprint.
    Finger,
}

impl Modality {
    /// Name as stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Face => "face",
            Modality::Finger => "finger",
        }
    }

    /// Parses `face` or `finger`.
    pub fn parse(s: &str) -> Result<Modality> {
        match s {
            "face" => Ok(Modality::Face),
            "finger" => Ok(Modality::Finger),
            _ => Err(Error::invalid(
                "modality",
                format!("`{s}`: expected face or finger"),
            )),
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where on the body a template comes from: the face, or a finger position
/// of ISO/IEC 19794-2 (codes 0 to 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// The face.
    Face,
    /// Finger of unknown position (ISO code 0).
    UnknownFinger,
    /// Right thumb (1).
    RightThumb,
    /// Right index finger (2).
    RightIndex,
    /// Right middle finger (3).
    RightMiddle,
    /// Right ring finger (4).
    RightRing,
    /// Right little finger (5).
    RightLittle,
    /// Left thumb (6).
    LeftThumb,
    /// Left index finger (7).
    LeftIndex,
    /// Left middle finger (8).
    LeftMiddle,
    /// Left ring finger (9).
    LeftRing,
    /// Left little finger (10).
    LeftLittle,
}

impl Position {
    /// Every position.
    pub const ALL: [Position; 12] = [
        Position::Face,
        Position::UnknownFinger,
        Position::RightThumb,
        Position::RightIndex,
        Position::RightMiddle,
        Position::RightRing,
        Position::RightLittle,
        Position::LeftThumb,
        Position::LeftIndex,
        Position::LeftMiddle,
        Position::LeftRing,
        Position::LeftLittle,
    ];

    /// Name as stored and shown (`face`, `right_thumb`, …).
    pub fn name(self) -> &'static str {
        match self {
            Position::Face => "face",
            Position::UnknownFinger => "unknown_finger",
            Position::RightThumb => "right_thumb",
            Position::RightIndex => "right_index",
            Position::RightMiddle => "right_middle",
            Position::RightRing => "right_ring",
            Position::RightLittle => "right_little",
            Position::LeftThumb => "left_thumb",
            Position::LeftIndex => "left_index",
            Position::LeftMiddle => "left_middle",
            Position::LeftRing => "left_ring",
            Position::LeftLittle => "left_little",
        }
    }

    /// Parses a position name.
    pub fn parse(s: &str) -> Result<Position> {
        Position::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::invalid("position", format!("`{s}` is not a template position")))
    }

    /// The ISO/IEC 19794-2 finger position code; `None` for the face.
    pub fn iso_code(self) -> Option<u8> {
        match self {
            Position::Face => None,
            p => Some(Position::ALL.iter().position(|&q| q == p).expect("listed") as u8 - 1),
        }
    }

    /// The modality a template at this position belongs to.
    pub fn modality(self) -> Modality {
        if self == Position::Face {
            Modality::Face
        } else {
            Modality::Finger
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One embedding space: templates of one modality embedded by one model
/// version. Templates of different collections are never compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// Name, also the index directory: 1 to 64 of `a-z 0-9 _ -`.
    pub name: String,
    /// What the templates are of.
    pub modality: Modality,
    /// Embedding model id (e.g. `mobilefacenet`).
    pub model_id: String,
    /// Embedding model version.
    pub model_version: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Comparison metric.
    pub metric: Metric,
    /// Index storage type.
    pub dtype: Dtype,
}

impl CollectionSpec {
    /// Checks the name and the dimension.
    pub fn validate(&self) -> Result<()> {
        let ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::invalid(
                "collection",
                format!("name `{}`: use 1 to 64 of a-z, 0-9, _ and -", self.name),
            ));
        }
        if self.model_id.is_empty() || self.model_version.is_empty() {
            return Err(Error::invalid(
                "collection",
                "model id and version must not be empty",
            ));
        }
        if !(1..=crate::vector::MAX_DIM).contains(&self.dim) {
            return Err(Error::invalid(
                "collection",
                format!(
                    "dimension {} outside 1..={}",
                    self.dim,
                    crate::vector::MAX_DIM
                ),
            ));
        }
        Ok(())
    }
}

/// A collection as stored in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Catalog id.
    pub id: u64,
    /// The collection's definition.
    pub spec: CollectionSpec,
    /// An upper bound on the templates any one subject has in it (identify
    /// fetches this many hits per wanted subject).
    pub max_per_subject: usize,
}

/// One template to enroll.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateInput {
    /// Collection name.
    pub collection: String,
    /// Where the template is from; must match the collection's modality.
    pub position: Position,
    /// Quality measure of the capture, if known.
    pub quality: Option<f32>,
    /// The embedding. Empty for a minutiae collection ([`crate::finger`]):
    /// the gallery computes its vector from `record`.
    #[serde(default)]
    pub vector: Vec<f32>,
    /// A finger minutiae record (ISO/IEC 19794-2:2005 or ANSI INCITS
    /// 378-2004): required in a minutiae collection, refused elsewhere.
    #[serde(default)]
    pub record: Option<Vec<u8>>,
}

/// A subject with its templates, to enroll or to replace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// External subject id (e.g. a 12-digit personal id): 1 to 128 printable ASCII characters.
    pub subject: String,
    /// At least one template.
    pub templates: Vec<TemplateInput>,
}

/// What an enrollment stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollReceipt {
    /// External subject id.
    pub subject: String,
    /// Catalog id of the subject.
    pub subject_id: u64,
    /// Catalog ids of its templates, in input order.
    pub template_ids: Vec<u64>,
}

/// A stored template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateRecord {
    /// Catalog id (also its index row id).
    pub id: u64,
    /// Collection name.
    pub collection: String,
    /// Where it is from.
    pub position: Position,
    /// Capture quality, if given.
    pub quality: Option<f32>,
    /// The embedding exactly as enrolled (computed from the record in a
    /// minutiae collection).
    pub vector: Vec<f32>,
    /// The minutiae record exactly as enrolled, if any.
    pub record: Option<Vec<u8>>,
}

/// A stored subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubjectRecord {
    /// External subject id.
    pub subject: String,
    /// Catalog id.
    pub subject_id: u64,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Last replacement time, Unix milliseconds.
    pub updated_ms: i64,
    /// Templates in id order.
    pub templates: Vec<TemplateRecord>,
}

/// Checks an external subject id: 1 to 128 printable ASCII characters.
pub fn validate_subject(subject: &str) -> Result<()> {
    if (1..=128).contains(&subject.len()) && subject.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::invalid(
            "subject",
            format!(
                "`{}`: use 1 to 128 printable ASCII characters without spaces",
                subject.escape_default()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_carry_iso_codes() {
        for p in Position::ALL {
            assert_eq!(Position::parse(p.name()).unwrap(), p);
        }
        assert_eq!(Position::Face.iso_code(), None);
        assert_eq!(Position::UnknownFinger.iso_code(), Some(0));
        assert_eq!(Position::RightThumb.iso_code(), Some(1));
        assert_eq!(Position::LeftLittle.iso_code(), Some(10));
        assert_eq!(Position::LeftIndex.modality(), Modality::Finger);
        assert!(Position::parse("nose").is_err());
    }

    #[test]
    fn names_and_subject_ids_are_checked() {
        let mut spec = CollectionSpec {
            name: "face-mfn_1".into(),
            modality: Modality::Face,
            model_id: "mobilefacenet".into(),
            model_version: "1".into(),
            dim: 128,
            metric: Metric::Cosine,
            dtype: Dtype::I8,
        };
        assert!(spec.validate().is_ok());
        for bad in ["", "Face", "a/b", "..", &"x".repeat(65)] {
            spec.name = bad.to_string();
            assert!(spec.validate().is_err(), "{bad}");
        }
        assert!(validate_subject("079123456789").is_ok());
        for bad in ["", "a b", "é", &"1".repeat(129)] {
            assert!(validate_subject(bad).is_err(), "{bad}");
        }
    }
}
