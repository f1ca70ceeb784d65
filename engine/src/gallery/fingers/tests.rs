//! Minutiae collections through the gallery, on the FVC2002 records:
//! enroll, verify, two-stage identify, fusion, reopen, delete, bad input.

use super::*;
use crate::finger::tests::fvc_record;
use crate::gallery::{Enrollment, GalleryOptions, TemplateInput};

const NAME: &str = "fingers";

/// Subject `f` (101..=110): right index = DB1 finger `f`, right middle =
/// DB2 finger `f`, impression `imp`.
fn person(f: u32, imp: u32) -> Option<Enrollment> {
    let finger = |db, position| {
        Some(TemplateInput {
            collection: NAME.into(),
            position,
            quality: None,
            vector: Vec::new(),
            record: Some(fvc_record(db, f, imp)?),
        })
    };
    Some(Enrollment {
        subject: format!("person-{f}"),
        templates: vec![
            finger(1, Position::RightIndex)?,
            finger(2, Position::RightMiddle)?,
        ],
    })
}

fn probe(g: &Gallery, db: u32, f: u32, imp: u32, position: Position) -> Option<PreparedFinger> {
    Some(
        g.prepare_finger(&fvc_record(db, f, imp)?, position)
            .unwrap(),
    )
}

fn gallery(dir: &std::path::Path) -> Option<Gallery> {
    let g = Gallery::open(dir, GalleryOptions::default()).unwrap();
    g.ensure_collection(&minutiae_collection(NAME)).unwrap();
    let people: Option<Vec<Enrollment>> = (101..=110).map(|f| person(f, 1)).collect();
    g.enroll_batch(&people?, "test").unwrap();
    Some(g)
}

#[test]
fn enroll_verify_identify_and_fuse() {
    let dir = tempfile::tempdir().unwrap();
    let Some(g) = gallery(dir.path()) else { return };
    // Stored as given: the record comes back byte for byte.
    let rec = g.get("person-103").unwrap().unwrap();
    assert_eq!(rec.templates[0].record, fvc_record(1, 103, 1));
    assert_eq!(rec.templates[0].vector.len(), vector::DIM);

    // Verify: the mate beats another subject; fusion averages.
    let p = probe(&g, 1, 103, 2, Position::RightIndex).unwrap();
    let q = probe(&g, 2, 103, 2, Position::RightMiddle).unwrap();
    let mate = g
        .verify_fingers("person-103", NAME, std::slice::from_ref(&p))
        .unwrap();
    let other = g
        .verify_fingers("person-104", NAME, std::slice::from_ref(&p))
        .unwrap();
    assert!(mate.score > 2.0 * other.score, "{mate:?} {other:?}");
    assert_eq!(mate.fingers[0].template_id, Some(rec.templates[0].id));
    let both = g
        .verify_fingers("person-103", NAME, &[p.clone(), q.clone()])
        .unwrap();
    let mean = (both.fingers[0].score.unwrap() + both.fingers[1].score.unwrap()) / 2.0;
    assert!((both.score - mean).abs() < 1e-6);
    // A finger the subject lacks counts 0.
    let thumb = probe(&g, 1, 103, 2, Position::LeftThumb).unwrap();
    let half = g
        .verify_fingers("person-103", NAME, &[p.clone(), thumb])
        .unwrap();
    assert_eq!(half.fingers[1].score, None);
    assert!((half.score - mate.score / 2.0).abs() < 1e-6);

    // Identify: rank 1 is the mate, with one finger and with two.
    let hits = g
        .identify_fingers(NAME, std::slice::from_ref(&p), 5, Search::TopK(3))
        .unwrap();
    assert_eq!(hits[0].subject, "person-103", "{hits:?}");
    let hits = g
        .identify_fingers(NAME, &[p, q], 5, Search::TopK(3))
        .unwrap();
    assert_eq!(hits[0].subject, "person-103", "{hits:?}");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let above = g
        .identify_fingers(
            NAME,
            &hits_probe(&g),
            10,
            Search::Threshold(hits[0].score + 1.0),
        )
        .unwrap();
    assert!(above.is_empty());
}

fn hits_probe(g: &Gallery) -> Vec<PreparedFinger> {
    vec![probe(g, 1, 105, 3, Position::UnknownFinger).unwrap()]
}

#[test]
fn reopen_rebuilds_the_matcher_table_and_delete_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let Some(g) = gallery(dir.path()) else { return };
    let p = probe(&g, 1, 107, 4, Position::RightIndex).unwrap();
    let before = g
        .identify_fingers(NAME, std::slice::from_ref(&p), 10, Search::TopK(10))
        .unwrap();
    drop(g);
    let g = Gallery::open(dir.path(), GalleryOptions::default()).unwrap();
    let after = g
        .identify_fingers(NAME, std::slice::from_ref(&p), 10, Search::TopK(10))
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(after[0].subject, "person-107");
    g.delete("person-107", "test").unwrap();
    let hits = g
        .identify_fingers(NAME, std::slice::from_ref(&p), 10, Search::TopK(10))
        .unwrap();
    assert!(hits.iter().all(|h| h.subject != "person-107"));
    assert!(matches!(
        g.verify_fingers("person-107", NAME, &[p]),
        Err(Error::UnknownSubject { .. })
    ));
    // Replace swaps the fingers in memory too.
    let mut swapped = person(108, 1).unwrap();
    swapped.subject = "person-101".into();
    g.replace(&swapped, "test").unwrap();
    let p108 = probe(&g, 1, 108, 2, Position::RightIndex).unwrap();
    let top: Vec<String> = g
        .identify_fingers(NAME, &[p108], 10, Search::TopK(2))
        .unwrap()
        .into_iter()
        .map(|h| h.subject)
        .collect();
    assert!(top.contains(&"person-101".to_string()) && top.contains(&"person-108".to_string()));
}

#[test]
fn bad_records_and_misuse_are_typed_errors_that_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(g) = gallery(dir.path()) else { return };
    let mut bad = person(101, 2).unwrap();
    bad.subject = "broken".into();
    let rec = bad.templates[1].record.as_mut().unwrap();
    rec.truncate(rec.len() - 3);
    assert!(matches!(
        g.enroll(&bad, "test"),
        Err(Error::MinutiaeRecord { .. })
    ));
    bad.templates[1].record = None;
    assert!(
        g.enroll(&bad, "test").is_err(),
        "a minutiae collection needs a record"
    );
    bad.templates[1].record = fvc_record(2, 101, 2);
    bad.templates[1].vector = vec![1.0; vector::DIM];
    assert!(
        g.enroll(&bad, "test").is_err(),
        "vectors are computed, not given"
    );
    assert!(g.get("broken").unwrap().is_none());
    assert!(
        g.prepare_finger(b"FMR\0 20\0", Position::RightIndex)
            .is_err()
    );
    assert!(
        g.prepare_finger(&fvc_record(1, 101, 1).unwrap(), Position::Face)
            .is_err()
    );
    let p = probe(&g, 1, 101, 2, Position::RightIndex).unwrap();
    assert!(g.identify_fingers(NAME, &[], 5, Search::TopK(1)).is_err());
    assert!(matches!(
        g.identify_fingers("nope", &[p], 5, Search::TopK(1)),
        Err(Error::UnknownCollection { .. })
    ));
}
