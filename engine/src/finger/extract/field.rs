//! The block fields of a fingerprint: ridge orientation and coherence from
//! the smoothed gradient structure tensor, the foreground mask, and the
//! local ridge period.

use std::f32::consts::PI;

use super::{ExtractParams, Plane};

/// Per-block fields on a grid of `block × block` pixels.
pub(super) struct Field {
    /// Block side in pixels.
    pub(super) block: usize,
    /// Blocks per row.
    pub(super) bw: usize,
    /// Blocks per column.
    pub(super) bh: usize,
    /// Local ridge direction in `[0, π)`, image axes (x right, y down),
    /// from the tensor smoothed over about three blocks.
    pub(super) orientation: Vec<f32>,
    /// Ridge direction for enhancement, smoothed over about five blocks:
    /// the doubled-angle vector `(cos 2θ, sin 2θ)` per block.
    pub(super) smooth: Vec<[f32; 2]>,
    /// Orientation coherence in `[0, 1]`.
    pub(super) coherence: Vec<f32>,
    /// Foreground blocks.
    pub(super) mask: Vec<bool>,
    /// Ridge period in pixels (smoothed; background blocks hold the median).
    pub(super) period: Vec<f32>,
    /// Whether a block's own period estimate was clear (before smoothing).
    pub(super) period_found: Vec<bool>,
}

impl Field {
    /// The block holding pixel `(x, y)`.
    pub(super) fn block_of(&self, x: usize, y: usize) -> usize {
        (y / self.block).min(self.bh - 1) * self.bw + (x / self.block).min(self.bw - 1)
    }

    /// Ridge direction in `[0, π)` at pixel `(x, y)`: the enhancement's
    /// orientation field, interpolated (finer than one block's value).
    pub(super) fn direction_at(&self, x: f32, y: f32) -> f32 {
        let v = self.smooth_at(x, y);
        (0.5 * v[1].atan2(v[0])).rem_euclid(PI)
    }

    /// The foreground block mask spread to the `w × h` pixels.
    pub(super) fn pixel_mask(&self, w: usize, h: usize) -> Vec<bool> {
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            let blocks = &self.mask[(y / self.block) * self.bw..][..self.bw];
            out.extend((0..w).map(|x| blocks[x / self.block]));
        }
        out
    }

    /// Orientation field for the enhancement at pixel `(x, y)`, bilinear
    /// between block centres in the doubled-angle domain: `(cos 2θ, sin 2θ)`.
    pub(super) fn smooth_at(&self, x: f32, y: f32) -> [f32; 2] {
        self.smooth_between(&self.lerp_x(x), &self.lerp_y(y))
    }

    /// The block columns around `x` and the weight of the right one.
    pub(super) fn lerp_x(&self, x: f32) -> Lerp {
        Lerp::new(x / self.block as f32 - 0.5, self.bw)
    }

    /// The block rows around `y` and the weight of the lower one.
    pub(super) fn lerp_y(&self, y: f32) -> Lerp {
        Lerp::new(y / self.block as f32 - 0.5, self.bh)
    }

    /// [`Field::smooth_at`] between the blocks that `column` and `row`
    /// pick (callers filling a grid compute each once).
    pub(super) fn smooth_between(&self, column: &Lerp, row: &Lerp) -> [f32; 2] {
        let at = |bx: usize, by: usize| self.smooth[by * self.bw + bx];
        let (tx, ty) = (column.t, row.t);
        let mut out = [0f32; 2];
        for (c, o) in out.iter_mut().enumerate() {
            let top = at(column.lo, row.lo)[c] * (1.0 - tx) + at(column.hi, row.lo)[c] * tx;
            let bottom = at(column.lo, row.hi)[c] * (1.0 - tx) + at(column.hi, row.hi)[c] * tx;
            *o = top * (1.0 - ty) + bottom * ty;
        }
        out
    }
}

/// One axis of a bilinear interpolation between block centres: the lower
/// and upper block and the upper one's weight.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lerp {
    lo: usize,
    hi: usize,
    t: f32,
}

impl Lerp {
    /// At `f` block units from the first centre, on `n` blocks (clamped).
    fn new(f: f32, n: usize) -> Lerp {
        let f = f.clamp(0.0, (n - 1) as f32);
        let lo = f as usize;
        Lerp {
            lo,
            hi: (lo + 1).min(n - 1),
            t: f - lo as f32,
        }
    }
}

/// Summed-area table of a `w × h` grid, with a row and a column of zeros
/// in front: the mean over any square window in four lookups.
pub(super) struct Integral {
    w: usize,
    h: usize,
    sums: Vec<f64>,
}

impl Integral {
    /// The table of `value(i)` for every cell `i` (row-major).
    pub(super) fn new(w: usize, h: usize, value: impl Fn(usize) -> f64) -> Integral {
        let mut sums = vec![0f64; (w + 1) * (h + 1)];
        for y in 0..h {
            let mut row = 0f64;
            for x in 0..w {
                row += value(y * w + x);
                let i = (y + 1) * (w + 1) + x + 1;
                sums[i] = sums[i - w - 1] + row;
            }
        }
        Integral { w, h, sums }
    }

    /// Mean over the `(2r + 1)²` window around `(x, y)`, clipped to the grid.
    pub(super) fn window_mean(&self, x: usize, y: usize, r: usize) -> f64 {
        let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(self.w));
        let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(self.h));
        let at = |xx: usize, yy: usize| self.sums[yy * (self.w + 1) + xx];
        let total = at(x1, y1) - at(x1, y0) - at(x0, y1) + at(x0, y0);
        total / ((y1 - y0) * (x1 - x0)) as f64
    }
}

/// Local contrast normalisation: each pixel minus the mean of the
/// `(2r + 1)²` window around it, over the window's standard deviation (at
/// least `floor` grey levels), so light and dark prints look alike.
pub(super) fn normalise(img: &Plane, r: usize, floor: f32) -> Plane {
    let (w, h) = (img.w, img.h);
    let s1 = Integral::new(w, h, |i| img.data[i] as f64);
    let s2 = Integral::new(w, h, |i| (img.data[i] * img.data[i]) as f64);
    let mut data = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let mean = s1.window_mean(x, y, r);
            let var = (s2.window_mean(x, y, r) - mean * mean).max(0.0);
            let sd = (var.sqrt() as f32).max(floor);
            data[y * w + x] = (img.data[y * w + x] - mean as f32) / sd;
        }
    }
    Plane { w, h, data }
}

/// Computes the fields of `raw` (500 dpi) and its normalised copy `img`.
pub(super) fn compute(raw: &Plane, img: &Plane, p: &ExtractParams) -> Field {
    let block = p.block;
    let (w, h) = (img.w, img.h);
    let (bw, bh) = (w.div_ceil(block), h.div_ceil(block));
    // Grey-level spread per block (raw image): flat areas are background.
    let mut moments = vec![[0f32; 2]; bw * bh];
    for y in 0..h {
        for (x, &v) in raw.row(y).iter().enumerate() {
            let m = &mut moments[(y / block) * bw + x / block];
            m[0] += v;
            m[1] += v * v;
        }
    }
    // Block sums of the structure tensor: (gxx − gyy, 2 gxy, gxx + gyy).
    let mut sums = vec![[0f32; 3]; bw * bh];
    for y in 1..h - 1 {
        let (up, mid, down) = (img.row(y - 1), img.row(y), img.row(y + 1));
        let row = &mut sums[(y / block) * bw..(y / block + 1) * bw];
        for x in 1..w - 1 {
            let gx = (up[x + 1] + 2.0 * mid[x + 1] + down[x + 1])
                - (up[x - 1] + 2.0 * mid[x - 1] + down[x - 1]);
            let gy =
                (down[x - 1] + 2.0 * down[x] + down[x + 1]) - (up[x - 1] + 2.0 * up[x] + up[x + 1]);
            let s = &mut row[x / block];
            s[0] += gx * gx - gy * gy;
            s[1] += 2.0 * gx * gy;
            s[2] += gx * gx + gy * gy;
        }
    }
    let channel = |c: usize| sums.iter().map(|s| s[c]).collect::<Vec<f32>>();
    let (a, b, e) = (channel(0), channel(1), channel(2));
    let (a1, b1, e1) = (
        blur(&a, bw, bh, 1.0),
        blur(&b, bw, bh, 1.0),
        blur(&e, bw, bh, 1.0),
    );
    let per_px = (block * block) as f32;
    let coherence: Vec<f32> = (0..bw * bh)
        .map(|i| {
            if e1[i] > 0.0 {
                (a1[i].hypot(b1[i]) / e1[i]).min(1.0)
            } else {
                0.0
            }
        })
        .collect();
    let orientation: Vec<f32> = (0..bw * bh).map(|i| ridge_angle(a1[i], b1[i])).collect();
    let mean = blur(
        &moments.iter().map(|m| m[0]).collect::<Vec<_>>(),
        bw,
        bh,
        1.0,
    );
    let square = blur(
        &moments.iter().map(|m| m[1]).collect::<Vec<_>>(),
        bw,
        bh,
        1.0,
    );
    let contrast: Vec<f32> = (0..bw * bh)
        .map(|i| {
            (square[i] / per_px - (mean[i] / per_px).powi(2))
                .max(0.0)
                .sqrt()
        })
        .collect();
    let (a15, b15, e15) = (
        blur(&a, bw, bh, 1.5),
        blur(&b, bw, bh, 1.5),
        blur(&e, bw, bh, 1.5),
    );
    let wide_coherence: Vec<f32> = (0..bw * bh)
        .map(|i| {
            if e15[i] > 0.0 {
                (a15[i].hypot(b15[i]) / e15[i]).min(1.0)
            } else {
                0.0
            }
        })
        .collect();
    let (a2, b2) = (
        blur(&a, bw, bh, p.orientation_smoothing),
        blur(&b, bw, bh, p.orientation_smoothing),
    );
    let smooth = (0..bw * bh)
        .map(|i| {
            // Ridge direction = gradient direction + π/2: negate the doubled angle.
            let n = a2[i].hypot(b2[i]);
            if n > 0.0 {
                [-a2[i] / n, -b2[i] / n]
            } else {
                [1.0, 0.0]
            }
        })
        .collect();
    let mask = segment(&contrast, &wide_coherence, bw, bh, p);
    let mut field = Field {
        block,
        bw,
        bh,
        orientation,
        smooth,
        coherence,
        mask,
        period: Vec::new(),
        period_found: Vec::new(),
    };
    ridge_period(img, &mut field);
    field
}

/// Ridge direction in `[0, π)` from the tensor's doubled-angle components.
fn ridge_angle(a: f32, b: f32) -> f32 {
    (0.5 * b.atan2(a) + PI / 2.0).rem_euclid(PI)
}

/// Separable Gaussian blur of a block grid (σ in blocks), renormalised at
/// the edges.
pub(super) fn blur(v: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    let r = (2.5 * sigma).ceil() as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let pass = |src: &[f32], stride: usize, step: usize, len: usize, lines: usize| {
        let mut out = vec![0f32; src.len()];
        for line in 0..lines {
            for i in 0..len as isize {
                let (mut s, mut n) = (0f32, 0f32);
                for (t, &kw) in (-r..=r).zip(&k) {
                    let j = i + t;
                    if (0..len as isize).contains(&j) {
                        s += kw * src[line * stride + j as usize * step];
                        n += kw;
                    }
                }
                out[line * stride + i as usize * step] = s / n;
            }
        }
        out
    };
    let rows = pass(v, w, 1, w, h);
    pass(&rows, 1, w, h, w)
}

/// Foreground: blocks with some grey-level contrast and coherent ridge
/// orientation, then cleaned by a closing and an opening, the largest
/// component kept and its holes filled.
fn segment(
    contrast: &[f32],
    coherence: &[f32],
    bw: usize,
    bh: usize,
    p: &ExtractParams,
) -> Vec<bool> {
    let raw: Vec<bool> = (0..bw * bh)
        .map(|i| contrast[i] >= p.min_contrast && coherence[i] >= p.segmentation_coherence)
        .collect();
    let closed = erode(&dilate(&raw, bw, bh), bw, bh);
    let opened = dilate(&erode(&closed, bw, bh), bw, bh);
    fill_holes(&largest_component(&opened, bw, bh), bw, bh)
}

fn morph(m: &[bool], w: usize, h: usize, dilate: bool) -> Vec<bool> {
    let mut out = vec![false; m.len()];
    for y in 0..h {
        for x in 0..w {
            let mut any = false;
            let mut all = true;
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let (nx, ny) = (x as isize + dx, y as isize + dy);
                    let v = (0..w as isize).contains(&nx)
                        && (0..h as isize).contains(&ny)
                        && m[ny as usize * w + nx as usize];
                    any |= v;
                    all &= v;
                }
            }
            out[y * w + x] = if dilate { any } else { all };
        }
    }
    out
}

fn dilate(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    morph(m, w, h, true)
}

fn erode(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    morph(m, w, h, false)
}

/// 4-connected components of `value` cells, as a label per cell (0: not `value`).
fn components(m: &[bool], w: usize, h: usize, value: bool) -> (Vec<u32>, Vec<usize>) {
    let mut label = vec![0u32; m.len()];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for start in 0..m.len() {
        if m[start] != value || label[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        sizes.push(0);
        label[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            sizes[id as usize] += 1;
            let (x, y) = (i % w, i / w);
            let mut visit = |j: usize| {
                if m[j] == value && label[j] == 0 {
                    label[j] = id;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
    }
    (label, sizes)
}

fn largest_component(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    let (label, sizes) = components(m, w, h, true);
    let Some(best) = (1..sizes.len()).max_by_key(|&i| sizes[i]) else {
        return m.to_vec();
    };
    label.iter().map(|&l| l == best as u32).collect()
}

/// Background components that do not touch the grid's edge become foreground.
fn fill_holes(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    let (label, sizes) = components(m, w, h, false);
    let mut outside = vec![false; sizes.len()];
    for (i, &l) in label.iter().enumerate() {
        let (x, y) = (i % w, i / w);
        if l != 0 && (x == 0 || y == 0 || x + 1 == w || y + 1 == h) {
            outside[l as usize] = true;
        }
    }
    label
        .iter()
        .zip(m)
        .map(|(&l, &fg)| fg || !outside[l as usize])
        .collect()
}

/// Samples across the ridges per block signature, and the periods tried.
const SIGNATURE: usize = 32;
const MIN_PERIOD: f32 = 4.5;
const MAX_PERIOD: f32 = 15.0;
const PERIOD_STEP: f32 = 0.25;

/// Ridge period per foreground block: the strongest frequency of the grey
/// levels sampled across the ridges (a 32-pixel "x-signature" averaged
/// along a 9-pixel stretch of ridge, Hann-windowed), kept where it is
/// clearly periodic, then smoothed over neighbouring blocks; blocks without
/// a clear estimate take their neighbours' or the image's median.
fn ridge_period(img: &Plane, f: &mut Field) {
    let n_periods = ((MAX_PERIOD - MIN_PERIOD) / PERIOD_STEP) as usize + 1;
    let periods: Vec<f32> = (0..n_periods)
        .map(|i| MIN_PERIOD + i as f32 * PERIOD_STEP)
        .collect();
    let window: Vec<f32> = (0..SIGNATURE)
        .map(|k| 0.5 - 0.5 * (2.0 * PI * (k as f32 + 0.5) / SIGNATURE as f32).cos())
        .collect();
    // Cosines and sines per sample, all periods side by side: the power
    // of every period accumulates at once (independent sums that
    // vectorise) instead of one period's long chain after another.
    let basis: Vec<[Vec<f32>; 2]> = (0..SIGNATURE)
        .map(|k| {
            let phase = |t: f32| 2.0 * PI * k as f32 / t;
            [
                periods.iter().map(|&t| phase(t).cos()).collect(),
                periods.iter().map(|&t| phase(t).sin()).collect(),
            ]
        })
        .collect();
    let (mut cos, mut sin) = (vec![0f32; n_periods], vec![0f32; n_periods]);
    let mut powers = vec![0f32; n_periods];
    let (bw, bh, b) = (f.bw, f.bh, f.block as f32);
    let (w, h) = (img.w as f32, img.h as f32);
    // Farthest sample from a block's centre (half the signature across,
    // two steps of 2 px along), with a pixel to spare for rounding.
    let reach = ((SIGNATURE as f32 / 2.0).powi(2) + 16.0).sqrt() + 1.0;
    let mut raw = vec![0f32; bw * bh];
    let mut weight = vec![0f32; bw * bh];
    let mut sig = [0f32; SIGNATURE];
    for by in 0..bh {
        for bx in 0..bw {
            let i = by * bw + bx;
            if !f.mask[i] {
                continue;
            }
            let (cx, cy) = ((bx as f32 + 0.5) * b, (by as f32 + 0.5) * b);
            let theta = f.orientation[i];
            let (dx, dy) = (theta.cos(), theta.sin());
            let (nx, ny) = (-dy, dx);
            // Every sample lies within `reach` of the centre; blocks whose
            // samples all fall inside the image skip the clamping.
            let inside =
                (reach..w - 1.0 - reach).contains(&cx) && (reach..h - 1.0 - reach).contains(&cy);
            for (k, s) in sig.iter_mut().enumerate() {
                let t = k as f32 - (SIGNATURE as f32 - 1.0) / 2.0;
                let mut acc = 0.0;
                for j in -2..=2 {
                    let u = 2.0 * j as f32;
                    let (x, y) = (cx + t * nx + u * dx, cy + t * ny + u * dy);
                    acc += if inside {
                        img.bilinear_inside(x, y)
                    } else {
                        img.bilinear(x, y)
                    };
                }
                *s = acc;
            }
            let mean = sig.iter().sum::<f32>() / SIGNATURE as f32;
            let mut total = 0f32;
            for (s, wv) in sig.iter_mut().zip(&window) {
                *s = (*s - mean) * wv;
                total += *s * *s;
            }
            if total <= 0.0 {
                continue;
            }
            cos.fill(0.0);
            sin.fill(0.0);
            for (&v, [bc, bs]) in sig.iter().zip(&basis) {
                for (c, b) in cos.iter_mut().zip(bc) {
                    *c += v * b;
                }
                for (s, b) in sin.iter_mut().zip(bs) {
                    *s += v * b;
                }
            }
            for ((p, c), s) in powers.iter_mut().zip(&cos).zip(&sin) {
                *p = c * c + s * s;
            }
            let best = (0..n_periods)
                .max_by(|&x, &y| powers[x].total_cmp(&powers[y]))
                .unwrap_or(0);
            // Parseval: a pure sinusoid puts about N/2 · total into its bin.
            let clarity = powers[best] / (total * SIGNATURE as f32 / 2.0);
            if best > 0 && best + 1 < n_periods && clarity >= 0.35 {
                let (l, c, r) = (powers[best - 1], powers[best], powers[best + 1]);
                let denom = l - 2.0 * c + r;
                let shift = if denom < 0.0 {
                    0.5 * (l - r) / denom
                } else {
                    0.0
                };
                raw[i] = periods[best] + shift.clamp(-0.5, 0.5) * PERIOD_STEP;
                weight[i] = clarity.min(1.0);
            }
        }
    }
    let mut found: Vec<f32> = (0..bw * bh)
        .filter(|&i| weight[i] > 0.0)
        .map(|i| raw[i])
        .collect();
    found.sort_by(f32::total_cmp);
    let median = found.get(found.len() / 2).copied().unwrap_or(9.0);
    let weighted: Vec<f32> = raw.iter().zip(&weight).map(|(r, w)| r * w).collect();
    let (num, den) = (blur(&weighted, bw, bh, 1.5), blur(&weight, bw, bh, 1.5));
    f.period = (0..bw * bh)
        .map(|i| {
            if den[i] > 0.05 {
                (num[i] / den[i]).clamp(MIN_PERIOD, MAX_PERIOD)
            } else {
                median
            }
        })
        .collect();
    f.period_found = weight.iter().map(|&w| w > 0.0).collect();
}
