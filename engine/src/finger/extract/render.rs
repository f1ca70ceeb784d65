//! A picture of an extraction, for people: the image with the background
//! dimmed, the main pass's ridge skeleton in green (minutiae added by the
//! fine pass lie on its own skeleton, not drawn), endings in red and
//! bifurcations in blue, each with a line along its direction.

use image::{Rgb, RgbImage};

use super::Analysis;
use crate::finger::MinutiaKind;
use crate::imaging::GreyImage;

/// Draws `analysis` (of `image`) on a colour copy of the image, enlarged
/// `zoom` times (1 to 8).
pub fn render(image: &GreyImage, analysis: &Analysis, zoom: u32) -> RgbImage {
    let zoom = zoom.clamp(1, 8);
    let z = zoom as f32;
    let (w, h) = image.dimensions();
    let mut out = RgbImage::new(w * zoom, h * zoom);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let g = image.get_pixel(x / zoom, y / zoom).0[0];
        let wx = (((x as f32 + 0.5) / z / analysis.scale) as usize).min(analysis.width - 1);
        let wy = (((y as f32 + 0.5) / z / analysis.scale) as usize).min(analysis.height - 1);
        let i = wy * analysis.width + wx;
        *px = if analysis.skeleton[i] {
            Rgb([0, 170, 0])
        } else if analysis.foreground[i] {
            Rgb([g, g, g])
        } else {
            let d = g / 3;
            Rgb([d, d, d.saturating_add(60)])
        };
    }
    let view = &analysis.extraction.record.views[0];
    for m in &view.minutiae {
        let colour = match m.kind {
            MinutiaKind::Ending => Rgb([230, 20, 20]),
            MinutiaKind::Bifurcation => Rgb([20, 90, 240]),
            MinutiaKind::Other => Rgb([240, 200, 0]),
        };
        let (x, y) = ((m.x as f32 + 0.5) * z, (m.y as f32 + 0.5) * z);
        let r = 4.0 * analysis.scale * z;
        circle(&mut out, x, y, r, colour);
        // ISO angles turn counter-clockwise with y up.
        let len = 14.0 * analysis.scale * z;
        let (ex, ey) = (x + len * m.angle.cos(), y - len * m.angle.sin());
        line(&mut out, (x, y), (ex, ey), colour);
    }
    out
}

fn put(img: &mut RgbImage, x: f32, y: f32, colour: Rgb<u8>) {
    let (x, y) = (x.round(), y.round());
    if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, colour);
    }
}

fn line(img: &mut RgbImage, from: (f32, f32), to: (f32, f32), colour: Rgb<u8>) {
    let steps = (to.0 - from.0)
        .abs()
        .max((to.1 - from.1).abs())
        .ceil()
        .max(1.0);
    for s in 0..=steps as usize {
        let t = s as f32 / steps;
        put(
            img,
            from.0 + t * (to.0 - from.0),
            from.1 + t * (to.1 - from.1),
            colour,
        );
    }
}

fn circle(img: &mut RgbImage, cx: f32, cy: f32, r: f32, colour: Rgb<u8>) {
    let n = (2.0 * std::f32::consts::PI * r).ceil().max(8.0) as usize;
    for k in 0..n {
        let a = k as f32 * 2.0 * std::f32::consts::PI / n as f32;
        put(img, cx + r * a.cos(), cy + r * a.sin(), colour);
    }
}
