//! Record parsing: hand-made fixtures of both formats (committed bytes, so a
//! change of the writer or the parser that breaks compatibility fails),
//! byte-exact round trips, every kind of truncation and inconsistency, and
//! the provided FVC2002 records.

use super::*;
use crate::finger::tests::fvc_record;

/// An ISO/IEC 19794-2:2005 record written by hand from the standard's
/// layout: 2 views (right index with 2 minutiae and one extended data area;
/// left thumb with 1 minutia and none).
const ISO_FIXTURE: &str = "464d52002032300000000040\
    0000 012c 0190 00c5 00c5 02 00\
    02 12 3c 02\
    4064 00c8 40 32\
    8010 0020 ff 00\
    000a 0001 000a 01020304 0506\
    06 00 00 01\
    0001 0001 00 00\
    0000";

/// The same content as an ANSI INCITS 378-2004 record: 2-byte length,
/// CBEFF product id, angles in 2° units.
const ANSI_FIXTURE: &str = "464d52002032300000420033000a\
    0000 012c 0190 00c5 00c5 02 00\
    02 12 3c 02\
    4064 00c8 2d 32\
    8010 0020 b3 00\
    000a 0001 000a 01020304 0506\
    06 00 00 01\
    0001 0001 00 00\
    0000";

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).unwrap()
}

#[test]
fn iso_fixture_parses_field_by_field() {
    let bytes = unhex(ISO_FIXTURE);
    assert_eq!(bytes.len(), 0x40);
    let r = MinutiaeRecord::parse(&bytes).unwrap();
    assert_eq!(r.format, Format::Iso2005);
    assert_eq!((r.width, r.height), (300, 400));
    assert_eq!((r.x_resolution, r.y_resolution), (197, 197));
    assert_eq!(r.views.len(), 2);
    let v = &r.views[0];
    assert_eq!(
        (v.position, v.view_number, v.impression_type, v.quality),
        (2, 1, 2, 60)
    );
    assert_eq!(v.minutiae.len(), 2);
    let m = v.minutiae[0];
    assert_eq!(
        (m.kind, m.x, m.y, m.quality),
        (MinutiaKind::Ending, 100, 200, 50)
    );
    assert!(
        (m.angle - 64.0 * TAU / 256.0).abs() < 1e-6,
        "a quarter turn"
    );
    let m = v.minutiae[1];
    assert_eq!((m.kind, m.x, m.y), (MinutiaKind::Bifurcation, 16, 32));
    assert!((m.angle - 255.0 * TAU / 256.0).abs() < 1e-6);
    assert_eq!(v.extended, unhex("0001 000a 01020304 0506"));
    let v = &r.views[1];
    assert_eq!((v.position, v.minutiae.len()), (6, 1));
    assert_eq!(v.minutiae[0].kind, MinutiaKind::Other);
    assert!(v.extended.is_empty());
    assert_eq!(r.to_bytes().unwrap(), bytes, "byte-exact round trip");
}

#[test]
fn ansi_fixture_parses_and_matches_the_iso_one() {
    let bytes = unhex(ANSI_FIXTURE);
    let ansi = MinutiaeRecord::parse(&bytes).unwrap();
    assert_eq!(ansi.format, Format::Ansi378);
    assert_eq!(ansi.product_id, 0x0033_000a);
    assert_eq!(ansi.to_bytes().unwrap(), bytes, "byte-exact round trip");
    let iso = MinutiaeRecord::parse(&unhex(ISO_FIXTURE)).unwrap();
    for (a, i) in ansi.views.iter().zip(&iso.views) {
        for (ma, mi) in a.minutiae.iter().zip(&i.minutiae) {
            assert_eq!((ma.kind, ma.x, ma.y), (mi.kind, mi.x, mi.y));
            // 2° units against 1.40625° units: within one coarse step.
            let d = (ma.angle - mi.angle).abs();
            assert!(d.min(TAU - d) <= 2f32.to_radians(), "{ma:?} {mi:?}");
        }
    }
    // Converting keeps everything but the angle resolution.
    let mut converted = ansi.clone();
    converted.format = Format::Iso2005;
    let back = MinutiaeRecord::parse(&converted.to_bytes().unwrap()).unwrap();
    assert_eq!(back.format, Format::Iso2005);
    assert_eq!(back.views[0].extended, ansi.views[0].extended);
}

#[test]
fn long_ansi_records_use_the_extended_length_field() {
    let mut r = MinutiaeRecord::parse(&unhex(ANSI_FIXTURE)).unwrap();
    let m = r.views[0].minutiae[0];
    r.views = (0..255)
        .map(|_| FingerView {
            position: 0,
            view_number: 0,
            impression_type: 0,
            quality: 0,
            minutiae: vec![m; 255],
            extended: Vec::new(),
        })
        .collect();
    let bytes = r.to_bytes().unwrap();
    assert!(bytes.len() > u16::MAX as usize);
    assert_eq!(&bytes[8..10], &[0, 0]);
    assert_eq!(MinutiaeRecord::parse(&bytes).unwrap(), r);
}

#[test]
fn every_truncation_is_an_error_naming_an_offset() {
    for fixture in [ISO_FIXTURE, ANSI_FIXTURE] {
        let bytes = unhex(fixture);
        for len in 0..bytes.len() {
            let err = MinutiaeRecord::parse(&bytes[..len]).unwrap_err();
            assert!(matches!(err, Error::MinutiaeRecord { .. }), "{len}: {err}");
        }
        // Truncated but with the length field patched to agree: the view
        // parser runs out of bytes and says where.
        let mut short = bytes[..bytes.len() - 3].to_vec();
        let format = MinutiaeRecord::parse(&bytes).unwrap().format;
        patch_length(&mut short, format);
        match MinutiaeRecord::parse_as(&short, format).unwrap_err() {
            Error::MinutiaeRecord { offset, reason } => {
                assert!(offset >= short.len() - 6, "{offset}");
                assert!(reason.contains("truncated"), "{reason}");
            }
            e => panic!("{e}"),
        }
    }
}

fn patch_length(bytes: &mut [u8], format: Format) {
    let len = bytes.len();
    match format {
        Format::Iso2005 => bytes[8..12].copy_from_slice(&(len as u32).to_be_bytes()),
        Format::Ansi378 => bytes[8..10].copy_from_slice(&(len as u16).to_be_bytes()),
    }
}

/// Corrupts one byte of the ISO fixture and expects an error at `offset`.
fn rejects(at: usize, value: u8, offset: usize, words: &str) {
    let mut bytes = unhex(ISO_FIXTURE);
    bytes[at] = value;
    match MinutiaeRecord::parse_as(&bytes, Format::Iso2005).unwrap_err() {
        Error::MinutiaeRecord { offset: o, reason } => {
            assert_eq!(o, offset, "{reason}");
            assert!(reason.contains(words), "{reason} lacks {words}");
        }
        e => panic!("{e}"),
    }
}

#[test]
fn inconsistent_fields_are_errors_naming_their_offset() {
    rejects(0, b'X', 0, "magic");
    rejects(5, b'3', 4, "version");
    rejects(11, 0x41, 8, "says 65 bytes");
    rejects(19, 0, 18, "resolution");
    rejects(22, 0, 22, "no finger views");
    rejects(22, 3, 64, "truncated");
    rejects(24, 11, 24, "position code 11");
    rejects(25, 0x15, 25, "impression type 5");
    rejects(26, 101, 26, "finger quality 101");
    rejects(28, 0xc0, 28, "reserved type 3");
    rejects(30, 0x3f, 28, "outside the 300×400 image");
    rejects(33, 101, 33, "quality 101");
    rejects(45, 0x0b, 44, "extended data area of 11 bytes");
    rejects(45, 0x03, 44, "extended data area of 3 bytes");
    let mut bytes = unhex(ISO_FIXTURE);
    bytes[14..16].copy_from_slice(&[0, 0]);
    let err = MinutiaeRecord::parse(&bytes).unwrap_err();
    assert!(
        err.to_string().contains("byte 14: image size 0×400"),
        "{err}"
    );
    // The view count grows but the length field stays: trailing bytes.
    let mut bytes = unhex(ISO_FIXTURE);
    bytes.extend_from_slice(&[0, 0]);
    patch_length(&mut bytes, Format::Iso2005);
    let err = MinutiaeRecord::parse(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains("2 bytes after the last finger view"),
        "{err}"
    );
    // ANSI angles stop at 179 (358°).
    let mut ansi = unhex(ANSI_FIXTURE);
    ansi[34] = 180;
    let err = MinutiaeRecord::parse(&ansi).unwrap_err();
    assert!(err.to_string().contains("angle code 180"), "{err}");
}

#[test]
fn fvc2002_records_parse_and_round_trip() {
    let mut total = 0;
    for db in 1..=4 {
        for finger in 101..=110 {
            for imp in 1..=8 {
                let Some(bytes) = fvc_record(db, finger, imp) else {
                    return;
                };
                let r = MinutiaeRecord::parse(&bytes).unwrap();
                assert_eq!(r.format, Format::Iso2005);
                assert_eq!((r.width, r.height, r.views.len()), (300, 400, 1));
                assert!(r.views[0].minutiae.len() >= 10);
                assert_eq!(r.to_bytes().unwrap(), bytes, "DB{db} {finger}_{imp}");
                total += 1;
            }
        }
    }
    assert_eq!(total, 320);
}
