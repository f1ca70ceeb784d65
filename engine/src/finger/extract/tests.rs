use image::{GrayImage, Luma};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::error::Error;
use crate::finger::tests::datasets;

/// The FVC2002 image `DB{db}_B/{finger}_{impression}.png` (fails under
/// `CI=true` when missing, skips otherwise).
fn fvc_image(db: u32, finger: u32, impression: u32) -> Option<GreyImage> {
    let path = datasets().join(format!("fvc2002/DB{db}_B/{finger}_{impression}.png"));
    match image::open(&path) {
        Ok(img) => Some(img.into_luma8()),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and {}: {e}", path.display())
        }
        Err(e) => {
            eprintln!("SKIPPED: {}: {e}", path.display());
            None
        }
    }
}

/// Synthetic ridges: concentric circles of period 9 px around a core,
/// with a few breaks, on a white background.
fn synthetic_print(w: u32, h: u32) -> GrayImage {
    let (cx, cy) = (w as f32 / 2.0, h as f32 * 0.4);
    GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let inside = (dx / (w as f32 * 0.42)).powi(2) + (dy / (h as f32 * 0.45)).powi(2) < 1.0;
        if !inside {
            return Luma([235]);
        }
        let r = dx.hypot(dy);
        let mut v = 128.0 + 100.0 * (2.0 * PI * r / 9.0).cos();
        // Breaks: gaps in some ridges make endings.
        if (dx - 40.0).abs() < 3.0 && r > 60.0 && r < 120.0 {
            v = 228.0;
        }
        Luma([v.clamp(0.0, 255.0) as u8])
    })
}

#[test]
fn bad_images_get_typed_errors() {
    let ex = Extractor::new(ExtractParams::default());
    let blank = GrayImage::from_pixel(400, 400, Luma([255]));
    assert!(matches!(
        ex.extract(&blank, 500.0),
        Err(Error::NoFinger { .. })
    ));
    let grey = GrayImage::from_pixel(400, 400, Luma([90]));
    assert!(matches!(
        ex.extract(&grey, 500.0),
        Err(Error::NoFinger { .. })
    ));
    let tiny = GrayImage::from_pixel(40, 60, Luma([0]));
    assert!(matches!(
        ex.extract(&tiny, 500.0),
        Err(Error::Image {
            kind: ImageProblem::TooSmall,
            ..
        })
    ));
    let huge = GrayImage::new(3000, 200);
    assert!(matches!(
        ex.extract(&huge, 500.0),
        Err(Error::Image {
            kind: ImageProblem::TooManyPixels,
            ..
        })
    ));
    // Uniform noise is texture without ridges.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let noise = GrayImage::from_fn(400, 400, |_, _| Luma([rng.random::<u8>()]));
    match ex.extract(&noise, 500.0) {
        Err(Error::NoFinger { .. } | Error::QualityRejected { .. }) => {}
        other => panic!("noise: {other:?}"),
    }
    assert!(matches!(
        ex.extract(&synthetic_print(300, 300), 100.0),
        Err(Error::InvalidArgument { name: "dpi", .. })
    ));
}

#[test]
fn synthetic_ridges_give_minutiae_inside_the_print() {
    let img = synthetic_print(320, 400);
    let ex = Extractor::new(ExtractParams::default());
    let a = ex.analyse(&img, 500.0).unwrap();
    let view = &a.extraction.record.views[0];
    assert!(!view.minutiae.is_empty(), "the breaks make endings");
    for m in &view.minutiae {
        assert!(a.foreground[m.y as usize * a.width + m.x as usize]);
    }
    let r = &a.extraction.record;
    assert_eq!((r.width, r.height, r.x_resolution), (320, 400, 197));
    MinutiaeRecord::parse(&r.to_bytes().unwrap()).unwrap();
}

#[test]
fn resolution_is_a_parameter() {
    // The same print scanned at 600 dpi: the record keeps the image's
    // geometry, and at 500 dpi it lands where the 500-dpi scan's does.
    let img = synthetic_print(320, 400);
    let big = crate::imaging::resize_bilinear(&img, 384, 480).unwrap();
    let ex = Extractor::new(ExtractParams {
        min_quality: 0,
        ..ExtractParams::default()
    });
    let r = ex.extract(&big, 600.0).unwrap().record;
    assert_eq!((r.width, r.height, r.x_resolution), (384, 480, 236));
    let view = r.view_at_500dpi(0).unwrap();
    for m in &view.minutiae {
        assert!(m.x < 330 && m.y < 410);
    }
}

#[test]
fn angle_bins_are_the_nearest_bank_direction() {
    // The definition: round(θ · 16 / π) mod 16, θ = atan2(sin 2θ, cos 2θ) / 2.
    let by_atan = |v: [f32; 2]| {
        let theta = (0.5 * v[1].atan2(v[0])).rem_euclid(PI);
        ((theta * gabor::ANGLES as f32 / PI).round() as usize) % gabor::ANGLES
    };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut checked = 0;
    for _ in 0..100_000 {
        let v = [
            rng.random_range(-1.0f32..1.0),
            rng.random_range(-1.0f32..1.0),
        ];
        // Within 0.01° of a boundary the two roundings may differ.
        let steps = v[1].atan2(v[0]).to_degrees() / 22.5;
        if (steps - steps.floor() - 0.5).abs() < 0.01 / 22.5 {
            continue;
        }
        assert_eq!(gabor::angle_bin(v), by_atan(v), "{v:?}");
        checked += 1;
    }
    assert!(checked > 99_000);
    // The axes and diagonals of the doubled angle, and the zero vector.
    for (v, bin) in [
        ([1.0, 0.0], 0),
        ([0.0, 1.0], 4),
        ([-1.0, 0.0], 8),
        ([0.0, -1.0], 12),
        ([-1.0, -1.0], 10),
        ([0.0, 0.0], 0),
    ] {
        assert_eq!(gabor::angle_bin(v), bin, "{v:?}");
    }
}

#[test]
fn gabor_dot_kernels_agree_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // 8 to 32 have AVX2 code; 40 falls back to the reference.
    for stride in [8, 16, 24, 32, 40] {
        for rows in [1, 2, 7, 23] {
            let pitch = stride + 13;
            // Room for a second pixel one float to the right.
            let window: Vec<f32> = (0..(rows - 1) * pitch + stride + 1)
                .map(|_| rng.random_range(-3.0f32..3.0))
                .collect();
            let kernels: [Vec<f32>; 2] = std::array::from_fn(|_| {
                (0..rows * stride)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect()
            });
            // reference[p][k]: pixel p (window shifted by p), kernel k.
            let reference: [[u32; 2]; 2] = std::array::from_fn(|p| {
                std::array::from_fn(|k| {
                    gabor::dot_rows(&window[p..], pitch, &kernels[k], stride, rows).to_bits()
                })
            });
            let [k0, k1] = [&kernels[0][..], &kernels[1][..]];
            let bits = |v: f32| v.to_bits();
            let at = format!("stride {stride}, rows {rows}");
            let one = gabor::dot_block::<1, 1>(&window, pitch, [k0], stride, rows);
            assert_eq!(one[0].map(bits), [reference[0][0]], "1×1, {at}");
            let banks = gabor::dot_block::<1, 2>(&window, pitch, [k0, k1], stride, rows);
            assert_eq!(banks[0].map(bits), reference[0], "1×2, {at}");
            let pixels = gabor::dot_block::<2, 1>(&window, pitch, [k1], stride, rows);
            assert_eq!(
                pixels.map(|p| p.map(bits)),
                [[reference[0][1]], [reference[1][1]]],
                "2×1, {at}"
            );
            let both = gabor::dot_block::<2, 2>(&window, pitch, [k0, k1], stride, rows);
            assert_eq!(both.map(|p| p.map(bits)), reference, "2×2, {at}");
            let exact: f64 = (0..rows)
                .flat_map(|r| (0..stride).map(move |c| (r, c)))
                .map(|(r, c)| {
                    f64::from(window[r * pitch + c]) * f64::from(kernels[0][r * stride + c])
                })
                .sum();
            let reference = f32::from_bits(reference[0][0]);
            assert!(
                (f64::from(reference) - exact).abs() < 1e-3,
                "{reference} vs {exact}"
            );
        }
    }
}

#[test]
fn simd_and_portable_enhancement_agree() {
    let Some(img) = fvc_image(1, 101, 1) else {
        return;
    };
    let params = ExtractParams::default();
    let fast = Extractor::with_backend(params, Backend::detect());
    let plane = Plane::from_grey(&img);
    let normal = field::normalise(&plane, 12, 4.0);
    let field = field::compute(&plane, &normal, &fast.params);
    let mask = field.pixel_mask(plane.w, plane.h);
    let choice = gabor::kernel_choice(&field, &mask, plane.w, plane.h);
    let (bank, fine) = (&fast.bank, fast.fine_bank.as_ref());
    // Both banks in one pass (the paired kernel), and each on its own.
    let enhance =
        |bank, fine, backend| gabor::enhance(&normal, bank, fine, &choice, backend, &mask);
    let (main, fine_reference) = enhance(bank, fine, Backend::Scalar);
    let reference = [main, fine_reference.unwrap()];
    let (main, fine_simd) = enhance(bank, fine, fast.backend);
    let simd = [
        main,
        fine_simd.unwrap(),
        enhance(bank, None, fast.backend).0,
        enhance(fine.unwrap(), None, fast.backend).0,
    ];
    for (i, a) in simd.iter().enumerate() {
        let b = &reference[i % 2];
        assert!(a.iter().any(|&v| v != 0.0));
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.to_bits(), y.to_bits(), "{x} vs {y}");
        }
    }
}

#[test]
fn fvc_images_extract_with_plausible_counts() {
    let ex = Extractor::new(ExtractParams::default());
    for db in 1..=4 {
        let Some(img) = fvc_image(db, 102, 3) else {
            return;
        };
        let dpi = if db == 2 { 569.0 } else { 500.0 };
        let e = ex.extract(&img, dpi).unwrap();
        let n = e.record.views[0].minutiae.len();
        assert!((15..=100).contains(&n), "DB{db}: {n} minutiae");
        assert!(e.quality.score >= 30, "DB{db}: {:?}", e.quality);
    }
}

#[test]
fn the_fine_pass_only_adds_minutiae_away_from_the_main_ones() {
    let main_only = Extractor::new(ExtractParams {
        fine: None,
        ..ExtractParams::default()
    });
    let both = Extractor::new(ExtractParams::default());
    let spacing = ExtractParams::default().fine.unwrap().spacing;
    let mut added = 0;
    for (db, dpi) in [(1, 500.0), (2, 569.0), (3, 500.0), (4, 500.0)] {
        let Some(img) = fvc_image(db, 104, 2) else {
            return;
        };
        let a = main_only.analyse(&img, dpi).unwrap();
        let b = both.analyse(&img, dpi).unwrap();
        let (ma, mb) = (
            &a.extraction.record.views[0].minutiae,
            &b.extraction.record.views[0].minutiae,
        );
        // Same foreground and main skeleton; every main minutia is kept.
        assert_eq!(a.foreground, b.foreground);
        assert_eq!(a.skeleton, b.skeleton);
        for m in ma {
            assert!(mb.contains(m), "DB{db}: {m:?} lost");
        }
        // The others are at least the spacing (in the smallest period the
        // field allows, scaled to the input) from every main minutia.
        let min_gap = spacing * 4.5 * a.scale;
        for m in mb.iter().filter(|m| !ma.contains(m)) {
            added += 1;
            for o in ma {
                let d = (f32::from(m.x) - f32::from(o.x)).hypot(f32::from(m.y) - f32::from(o.y));
                assert!(d > min_gap - 1.0, "DB{db}: {m:?} {d} px from {o:?}");
            }
        }
    }
    assert!(added > 0, "the fine pass added nothing on four prints");
}

#[test]
fn isolated_minutiae_are_added_up_to_the_cap() {
    // Straight ridges of period 9 px.
    let img = GrayImage::from_fn(320, 320, |_, y| {
        Luma([(128.0 + 100.0 * (2.0 * PI * y as f32 / 9.0).cos()) as u8])
    });
    let plane = Plane::from_grey(&img);
    let field = field::compute(
        &plane,
        &field::normalise(&plane, 12, 4.0),
        &ExtractParams::default(),
    );
    assert!((field.period[field.block_of(150, 150)] - 9.0).abs() < 0.5);
    let at = |x: f32, y: f32, quality: f32| Found {
        pixel: (y as usize) * 320 + x as usize,
        x,
        y,
        kind: MinutiaKind::Ending,
        direction: 0.0,
        quality,
        keep: true,
    };
    let mut kept = vec![at(100.0, 100.0, 0.9), at(200.0, 100.0, 0.8)];
    // 10 px (closer than 2 periods of 9 px), 30 px and 100 px away.
    let extra = [
        at(110.0, 100.0, 1.0),
        at(100.0, 130.0, 0.5),
        at(300.0, 300.0, 0.1),
    ];
    add_isolated(&mut kept, &extra, &field, 2.0, 10);
    let xy: Vec<(f32, f32)> = kept.iter().map(|m| (m.x, m.y)).collect();
    assert_eq!(
        xy,
        [
            (100.0, 100.0),
            (200.0, 100.0),
            (100.0, 130.0),
            (300.0, 300.0)
        ]
    );
    // At most `max`, the best by quality, in pixel order.
    let mut capped = vec![at(100.0, 100.0, 0.9), at(200.0, 100.0, 0.8)];
    add_isolated(&mut capped, &extra, &field, 2.0, 3);
    let xy: Vec<(f32, f32)> = capped.iter().map(|m| (m.x, m.y)).collect();
    assert_eq!(xy, [(100.0, 100.0), (200.0, 100.0), (100.0, 130.0)]);
}

#[test]
fn truncated_image_is_a_typed_error() {
    let Some(img) = fvc_image(1, 101, 1) else {
        return;
    };
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let limits = crate::imaging::DecodeLimits::default();
    let cut = &png[..png.len() / 2];
    assert!(matches!(
        crate::imaging::decode_grey(cut, &limits),
        Err(Error::Image { .. })
    ));
}

#[test]
fn weak_response_leaves_the_foreground() {
    // A 60 × 40 foreground: a ridge pattern on the left 40 columns, a
    // blank margin (tiny response) on the right 20.
    let (w, h) = (60, 40);
    let response: Vec<f32> = (0..w * h)
        .map(|i| {
            let x = i % w;
            if x < 40 {
                (2.0 * PI * x as f32 / 9.0).cos()
            } else {
                0.01
            }
        })
        .collect();
    let fg = vec![true; w * h];
    let p = ExtractParams {
        response_window: 4,
        ..ExtractParams::default()
    };
    let kept = responsive(&response, &fg, w, h, &p);
    for y in 0..h {
        // Ridges stay foreground; the margin, beyond the window's reach, goes.
        assert!((0..40).all(|x| kept[y * w + x]), "row {y}");
        assert!((45..60).all(|x| !kept[y * w + x]), "row {y}");
    }
    // Background stays background; no foreground at all changes nothing.
    let none = vec![false; w * h];
    assert_eq!(responsive(&response, &none, w, h, &p), none);
}

#[test]
fn pores_are_filled_but_not_valleys() {
    // A 30 × 30 ridge block holding a 2 × 2 pore, a 6 × 6 hole, and a
    // small valley in the corner that opens onto the background row and
    // the image's edge.
    let (w, h) = (30, 30);
    let mut ridges = vec![true; w * h];
    let mut fg = vec![true; w * h];
    let mut clear = |x0: usize, y0: usize, side_x: usize, side_y: usize| {
        for y in y0..y0 + side_y {
            for x in x0..x0 + side_x {
                ridges[y * w + x] = false;
            }
        }
    };
    clear(5, 5, 2, 2);
    clear(15, 5, 6, 6);
    clear(0, 25, 3, 2);
    for x in 0..w {
        fg[29 * w + x] = false;
        ridges[29 * w + x] = false;
    }
    // Column 1 joins the corner valley to the background row.
    for y in 25..29 {
        ridges[y * w + 1] = false;
    }
    let mut filled = ridges.clone();
    fill_pores(&mut filled, &fg, w, h, 20);
    assert!(filled[5 * w + 5] && filled[6 * w + 6], "the pore is filled");
    assert!(!filled[7 * w + 17], "the 36-pixel hole stays");
    assert!(!filled[25 * w + 1], "the open valley stays");
    let changed = (0..w * h).filter(|&i| filled[i] != ridges[i]).count();
    assert_eq!(changed, 4);
}

#[test]
fn pore_filling_matches_whole_component_labelling() {
    // The early-stopping exploration against the definition: label every
    // valley component whole, fill those that are closed and small.
    fn reference(ridges: &mut [bool], fg: &[bool], w: usize, h: usize, max: usize) {
        let mut seen = vec![false; ridges.len()];
        for start in 0..ridges.len() {
            if seen[start] || ridges[start] || !fg[start] {
                continue;
            }
            let (mut component, mut stack, mut open) = (Vec::new(), vec![start], false);
            seen[start] = true;
            while let Some(i) = stack.pop() {
                component.push(i);
                let (x, y) = ((i % w) as isize, (i / w) as isize);
                for (dx, dy) in [(-1, 0), (1, 0), (0, -1), (0, 1)] {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                        open = true;
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if !fg[j] {
                        open = true;
                    } else if !ridges[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
            if !open && component.len() < max {
                component.iter().for_each(|&i| ridges[i] = true);
            }
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (w, h) = (64, 48);
    let mut filled_any = 0;
    for round in 0..200 {
        let density = rng.random_range(0.45f32..0.8);
        let ridges: Vec<bool> = (0..w * h).map(|_| rng.random::<f32>() < density).collect();
        // An elliptical foreground with some background specks inside.
        let fg: Vec<bool> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - 32.0, (i / w) as f32 - 24.0);
                (x / 30.0).powi(2) + (y / 22.0).powi(2) < 1.0 && rng.random::<f32>() > 0.01
            })
            .collect();
        let ridges: Vec<bool> = ridges.iter().zip(&fg).map(|(&r, &m)| r && m).collect();
        let max = [3, 8, 20, 60][round % 4];
        let (mut fast, mut slow) = (ridges.clone(), ridges.clone());
        fill_pores(&mut fast, &fg, w, h, max);
        reference(&mut slow, &fg, w, h, max);
        assert_eq!(fast, slow, "round {round}, max {max}");
        filled_any += (0..w * h).filter(|&i| fast[i] != ridges[i]).count();
    }
    assert!(
        filled_any > 1000,
        "the maps hold pores to fill ({filled_any} px)"
    );
}

#[test]
fn directions_follow_the_interpolated_field() {
    // Straight ridges of period 9 at 0°, 30° and 120° (image axes, y
    // down): the interpolated direction is the ridges' own, between block
    // centres too (a wrong sign or a gradient-for-ridge swap shows at the
    // oblique angles).
    for degrees in [0f32, 30.0, 120.0] {
        let theta = degrees.to_radians();
        let img = GrayImage::from_fn(200, 200, |x, y| {
            let across = -(x as f32) * theta.sin() + y as f32 * theta.cos();
            Luma([(128.0 + 100.0 * (2.0 * PI * across / 9.0).cos()) as u8])
        });
        let plane = Plane::from_grey(&img);
        let normal = field::normalise(&plane, 12, 4.0);
        let f = field::compute(&plane, &normal, &ExtractParams::default());
        for (x, y) in [(50.5, 50.5), (100.0, 97.3), (151.2, 140.8)] {
            let got = f.direction_at(x, y);
            let error = angle_between(got, theta).min(angle_between(got, theta + PI));
            assert!(
                error < 0.05,
                "{degrees}° at ({x}, {y}): {}°",
                got.to_degrees()
            );
        }
    }
}
