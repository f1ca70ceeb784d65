//! The 1:1 minutiae matcher: Minutia Cylinder-Code local structures and a
//! relaxation-based global consolidation.
//!
//! # Local structures
//!
//! Each minutia gets a *cylinder* (Cappelli, Ferrara, Maltoni, "Minutia
//! Cylinder-Code", IEEE TPAMI 2010): a disc of radius `R` around it, turned
//! to the minutia's direction, cut into `Ns × Ns` spatial cells (those whose
//! centre lies in the disc are kept) and `Nd` direction bins. A cell holds
//! how much neighbouring minutiae near the cell's centre point in the bin's
//! direction relative to the centre minutia, squashed by a sigmoid into
//! `[0, 1]` and stored as a 7-bit integer. Cells outside the fingerprint
//! (farther than `ω` from the convex hull of the minutiae) are invalid. The
//! cylinder is invariant to translation and rotation by construction and
//! degrades gracefully with missing, spurious and displaced minutiae.
//! Comparisons are further limited to minutiae whose directions differ by
//! at most `δθ` (90°): fingers are captured upright, and the gate halves
//! the work and the chance matches, so two impressions rotated by more
//! than about 90° against each other do not match.
//!
//! Two cylinders compare over the cells valid in both: `1 − ‖a − b‖ /
//! (‖a‖ + ‖b‖)`, or 0 when their minutiae point more than `δθ` apart or too
//! few cells overlap. The `a · b` term is one `i8` inner product over the
//! whole cylinder (invalid cells are zeroed) on the [`crate::vector`] SIMD
//! kernels; the norms restricted to the common cells are sums of per-cell
//! energies under a 128-bit cell mask.
//!
//! # Consolidation (LSS-R)
//!
//! The `min(nA, nB)` most similar minutia pairs are taken as candidates;
//! five rounds of relaxation reinforce pairs that are geometrically
//! compatible with the others (distances, relative directions and radial
//! angles agree within soft tolerances) and weaken the rest. The `nP` pairs
//! that gained most (4 to 12, growing with the minutiae count), taken one
//! to one, give the score: the mean of their relaxed similarities.
//!
//! # Global pairing
//!
//! Local structures alone cannot tell a finger whose minutiae agree
//! everywhere from one that agrees in a small patch. So the alignments
//! of the three best final pairs (each pair's direction difference and
//! positions) are tried in turn: `a`'s minutiae are turned and shifted
//! onto `b` and paired one to one, nearest first, when they lie within
//! 12 px and 0.5 rad of each other. With `m` pairs and `nA`, `nB`
//! minutiae in the overlap (each template's minutiae inside the other's
//! convex hull grown by 10 px, looked up in a raster of 8 px cells made
//! with the template; counted as at least 8), the global score is the
//! best `m² / (nA · nB)`, and the final score the weighted geometric mean
//! `lss^0.7 · g^0.3`. On FVC2002 B this took the mean EER from 2.41 to
//! 1.89 % on the provided records and from 3.23 to 2.37 % on minutiae
//! from [`super::extract`] (README, "Fingerprint accuracy"), at about
//! 0.8× the comparisons per second of LSS-R alone.
//!
//! # Scores
//!
//! In `[0, 1]`, symmetric, deterministic, identical on every kernel
//! backend. Relaxation pulls scores down: on FVC2002 B unrelated fingers
//! average 0.03, mates 0.2–0.4, and FMR 1 % / 0.1 % fall at thresholds of
//! about 0.05 / 0.075 (`biomatch eval fvc --json` reports them per set).
//! A template with fewer than two valid cylinders matches nothing
//! (score 0).
//!
//! # Cost
//!
//! Building a template costs a fraction of a millisecond; [`Matcher`] holds
//! every buffer a comparison needs, so scoring allocates nothing once warm.

use std::f32::consts::{PI, TAU};

use super::iso19794::{FingerView, MinutiaKind};
use super::kernel::{self, Layout};
use crate::vector::Kernels;

/// Matcher parameters. The defaults are the MCC paper's for 500 dpi except
/// for the coarser `Ns` (8 instead of 16: a quarter of the work), a
/// distance tolerance that grows with distance (`dist_slack`), softer
/// compatibility sigmoids, 5 to 14 final pairs, at most 30 relaxed
/// pairs and the global pairing — chosen on FVC2002 B itself (there is no
/// separate development set here; see the README's accuracy notes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Cylinder radius in pixels.
    pub radius: f32,
    /// Spatial cells along a side.
    pub ns: usize,
    /// Direction bins.
    pub nd: usize,
    /// Spatial Gaussian σ in pixels.
    pub sigma_s: f32,
    /// Directional Gaussian σ in radians.
    pub sigma_d: f32,
    /// Sigmoid centre applied to a cell's raw sum.
    pub mu_psi: f32,
    /// Sigmoid steepness.
    pub tau_psi: f32,
    /// Convex hull enlargement in pixels.
    pub omega: f32,
    /// Fraction of a cylinder's cells that must be valid.
    pub min_valid_cells: f32,
    /// Neighbours a cylinder needs within `radius + 3σs`.
    pub min_neighbours: usize,
    /// Fraction of cells two cylinders must share to be compared.
    pub min_matching_cells: f32,
    /// Largest direction difference of two comparable minutiae (radians).
    pub max_angle: f32,
    /// Most candidate pairs relaxed (`nR`; the paper uses `min(nA, nB)`;
    /// capping it at 30 costs nothing measurable on FVC2002 and bounds the
    /// quadratic relaxation).
    pub max_relaxed: usize,
    /// Relaxation rounds.
    pub relax_rounds: usize,
    /// Weight of a pair's own similarity in a relaxation round.
    pub relax_weight: f32,
    /// Compatibility tolerances: distance (pixels), direction and radial angle (radians).
    pub mu_rho: [f32; 3],
    /// Growth of the distance tolerance with the distance (per pixel of
    /// the two distances' sum): absorbs skin stretch and scanner scaling.
    pub dist_slack: f32,
    /// Compatibility sigmoid steepness for the three tolerances.
    pub tau_rho: [f32; 3],
    /// Fewest and most pairs in the final score.
    pub n_pairs: (usize, usize),
    /// Minutiae count at which the pair count is half way, and steepness.
    pub mu_tau_pairs: (f32, f32),
    /// Weight `w` of the global pairing score `g` in the final score
    /// `lss^(1−w) · g^w` (0 leaves the LSS-R score alone).
    pub global_weight: f32,
    /// Final pairs (best first) whose alignment is tried for the global pairing.
    pub global_anchors: usize,
    /// Largest distance (pixels) and direction difference (radians) of two
    /// minutiae paired under an alignment.
    pub pair_tolerance: (f32, f32),
    /// How far outside the other template's convex hull a minutia still
    /// counts as in the overlap (pixels).
    pub overlap_margin: f32,
    /// Smallest overlap count in the global score's denominator: a few
    /// pairs in a tiny overlap do not make a strong match.
    pub min_overlap: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            radius: 70.0,
            ns: 8,
            nd: 6,
            sigma_s: 28.0 / 3.0,
            sigma_d: 2.0 * PI / 9.0,
            mu_psi: 0.01,
            tau_psi: 400.0,
            omega: 50.0,
            min_valid_cells: 0.75,
            min_neighbours: 2,
            min_matching_cells: 0.6,
            max_angle: PI / 2.0,
            max_relaxed: 30,
            relax_rounds: 5,
            relax_weight: 0.5,
            mu_rho: [5.0, PI / 12.0, PI / 12.0],
            dist_slack: 0.01,
            tau_rho: [-1.0, -20.0, -20.0],
            n_pairs: (5, 14),
            mu_tau_pairs: (20.0, 0.4),
            global_weight: 0.3,
            global_anchors: 3,
            pair_tolerance: (12.0, 0.5),
            overlap_margin: 10.0,
            min_overlap: 8,
        }
    }
}

/// Angles as fractions of a turn in 16 bits: differences wrap for free.
type Turn = u16;

fn to_turn(radians: f32) -> Turn {
    ((radians.rem_euclid(TAU) / TAU * 65536.0).round() as u32 & 0xffff) as Turn
}

/// Signed angle difference `a − b` in radians, in `[−π, π)`.
fn turn_diff(a: Turn, b: Turn) -> f32 {
    a.wrapping_sub(b) as i16 as f32 * (TAU / 65536.0)
}

/// Cylinder geometry and lookup tables derived from [`Params`].
#[derive(Clone, Debug)]
pub struct Encoder {
    params: Params,
    /// Cell centres in the cylinder's frame, those inside the disc.
    cells: Vec<(f32, f32)>,
    /// Cylinder planes.
    layout: Layout,
    /// Directional contribution of a neighbour per bin, by relative angle (256 steps).
    dir_lut: Vec<f32>,
}

/// A finger's minutiae prepared for matching.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    n: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    angle: Vec<Turn>,
    kind: Vec<MinutiaKind>,
    /// Whether minutia `i`'s cylinder is usable.
    valid: Vec<bool>,
    /// `n` cylinders in the [`kernel`] layout (values, energy, mask planes).
    cells: Vec<u8>,
    /// Valid-cell masks.
    masks: Vec<u128>,
    /// `n × n` distances.
    dist: Vec<f32>,
    /// `n × n` radial angles: direction of `i` against the line from `i` to `j`.
    radial: Vec<Turn>,
    layout: Layout,
    /// Spatial cells per cylinder.
    n_cells: usize,
    /// The minutiae's convex hull grown by `overlap_margin`, rasterised.
    overlap: Raster,
    /// Minutiae indices sorted by `x`, and their `x`.
    by_x: Vec<u16>,
    sorted_x: Vec<f32>,
    /// `x_bins[k]`: the first position in `sorted_x` at or after
    /// `k · X_BIN` pixels; the last entry is `n`.
    x_bins: Vec<u16>,
}

impl Encoder {
    /// Builds the cylinder geometry for `params`.
    ///
    /// # Panics
    /// If the parameters give more than 128 cells in the disc (`ns > 12`).
    pub fn new(params: Params) -> Encoder {
        let ns = params.ns;
        let side = 2.0 * params.radius / ns as f32;
        let mut cells = Vec::new();
        for i in 0..ns {
            for j in 0..ns {
                let u = (i as f32 + 0.5) * side - params.radius;
                let v = (j as f32 + 0.5) * side - params.radius;
                if u * u + v * v <= params.radius * params.radius {
                    cells.push((u, v));
                }
            }
        }
        assert!(cells.len() <= 128, "{} cells: at most 128", cells.len());
        let layout = Layout::new(cells.len() * params.nd, cells.len());
        let bin = TAU / params.nd as f32;
        let scale = 1.0 / (params.sigma_d * std::f32::consts::SQRT_2);
        let mut dir_lut = Vec::with_capacity(256 * params.nd);
        for step in 0..256 {
            let rel = turn_diff((step as u32 * 256) as Turn, 0);
            for k in 0..params.nd {
                let centre = -PI + (k as f32 + 0.5) * bin;
                let alpha = wrap(centre - rel);
                let c = 0.5
                    * (libm::erff((alpha + bin / 2.0) * scale)
                        - libm::erff((alpha - bin / 2.0) * scale));
                dir_lut.push(c);
            }
        }
        Encoder {
            params,
            cells,
            layout,
            dir_lut,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Prepares a view's minutiae for matching.
    pub fn encode(&self, view: &FingerView) -> Template {
        let p = &self.params;
        let n = view.minutiae.len();
        let x: Vec<f32> = view.minutiae.iter().map(|m| m.x as f32).collect();
        let y: Vec<f32> = view.minutiae.iter().map(|m| m.y as f32).collect();
        let angle: Vec<Turn> = view.minutiae.iter().map(|m| to_turn(m.angle)).collect();
        let hull = convex_hull(&x, &y);
        let overlap = Raster::new(&hull, p.overlap_margin);
        let mut by_x: Vec<u16> = (0..n as u16).collect();
        by_x.sort_by(|&i, &j| x[i as usize].total_cmp(&x[j as usize]).then(i.cmp(&j)));
        let sorted_x: Vec<f32> = by_x.iter().map(|&i| x[i as usize]).collect();
        let bins = sorted_x.last().map_or(0, |&x| (x / X_BIN) as usize + 1);
        let x_bins = (0..=bins)
            .map(|k| sorted_x.partition_point(|&v| v < k as f32 * X_BIN) as u16)
            .collect();
        let mut t = Template {
            overlap,
            by_x,
            sorted_x,
            x_bins,
            n,
            kind: view.minutiae.iter().map(|m| m.kind).collect(),
            valid: vec![false; n],
            cells: vec![0; n * self.layout.bytes()],
            masks: vec![0; n],
            dist: vec![0.0; n * n],
            radial: vec![0; n * n],
            layout: self.layout,
            n_cells: self.cells.len(),
            x,
            y,
            angle,
        };
        for i in 0..n {
            for j in 0..n {
                let (dx, dy) = (t.x[j] - t.x[i], t.y[j] - t.y[i]);
                t.dist[i * n + j] = (dx * dx + dy * dy).sqrt();
                // Image rows grow downwards; angles turn counter-clockwise.
                t.radial[i * n + j] = t.angle[i].wrapping_sub(to_turn((-dy).atan2(dx)));
            }
        }
        let reach = 3.0 * p.sigma_s;
        let gauss = 1.0 / (p.sigma_s * (TAU).sqrt());
        let need = (p.min_valid_cells * self.cells.len() as f32).ceil() as u32;
        for i in 0..n {
            let neighbours = (0..n)
                .filter(|&j| j != i && t.dist[i * n + j] <= p.radius + reach)
                .count();
            if neighbours < p.min_neighbours {
                continue;
            }
            let theta = view.minutiae[i].angle;
            // The cylinder's axes in image coordinates: along the minutia's
            // direction, and a quarter turn from it.
            let (s, c) = theta.sin_cos();
            let (e1, e2) = ((c, -s), (s, c));
            let mut mask = 0u128;
            let Layout { dim, cells } = self.layout;
            let size = self.layout.bytes();
            let row = &mut t.cells[i * size..(i + 1) * size];
            for (ci, &(u, v)) in self.cells.iter().enumerate() {
                let px = t.x[i] + u * e1.0 + v * e2.0;
                let py = t.y[i] + u * e1.1 + v * e2.1;
                if !hull_contains(&hull, px, py, p.omega) {
                    continue;
                }
                mask |= 1 << ci;
                let mut sums = [0f32; 16];
                for j in 0..n {
                    if j == i {
                        continue;
                    }
                    let d2 = (t.x[j] - px).powi(2) + (t.y[j] - py).powi(2);
                    if d2 > reach * reach {
                        continue;
                    }
                    let spatial = gauss * (-d2 / (2.0 * p.sigma_s * p.sigma_s)).exp();
                    let rel = t.angle[j].wrapping_sub(t.angle[i]);
                    let lut = &self.dir_lut[(rel as usize >> 8) * p.nd..][..p.nd];
                    for (s, d) in sums.iter_mut().zip(lut) {
                        *s += spatial * d;
                    }
                }
                let mut energy = 0;
                for (k, &s) in sums[..p.nd].iter().enumerate() {
                    let v = 1.0 / (1.0 + (-p.tau_psi * (s - p.mu_psi)).exp());
                    let q = (v * 127.0).round() as i32;
                    row[ci * p.nd + k] = q as u8;
                    energy += q * q;
                }
                let (e, m) = (dim + 2 * ci, dim + 2 * cells + 2 * ci);
                row[e..e + 2].copy_from_slice(&((energy / 4) as i16).to_le_bytes());
                row[m..m + 2].copy_from_slice(&1i16.to_le_bytes());
            }
            if mask.count_ones() >= need {
                t.valid[i] = true;
                t.masks[i] = mask;
            } else {
                row.fill(0);
            }
        }
        t
    }
}

fn wrap(a: f32) -> f32 {
    (a + PI).rem_euclid(TAU) - PI
}

/// The convex hull (counter-clockwise in `x`-right/`y`-down coordinates as
/// a list of corners; Andrew's monotone chain).
fn convex_hull(x: &[f32], y: &[f32]) -> Vec<(f32, f32)> {
    let mut pts: Vec<(f32, f32)> = x.iter().copied().zip(y.iter().copied()).collect();
    pts.sort_by(|a, b| a.partial_cmp(b).expect("finite coordinates"));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f32, f32)> = Vec::with_capacity(2 * pts.len());
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &(f32, f32)>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// A convex hull's edges as lines `nx·x + ny·y = c` with unit normals
/// pointing inwards: a point's signed distance to an edge's line is
/// `nx·x + ny·y − c`, positive inside. Hulls of fewer than three corners
/// have no edges.
fn hull_edges(hull: &[(f32, f32)]) -> Vec<[f32; 3]> {
    if hull.len() < 3 {
        return Vec::new();
    }
    (0..hull.len())
        .map(|k| {
            let (a, b) = (hull[k], hull[(k + 1) % hull.len()]);
            // Counter-clockwise on the image: the inside is on the side
            // where the cross product in `hull_contains` is non-negative.
            let (nx, ny) = (-(b.1 - a.1), b.0 - a.0);
            let len = (nx * nx + ny * ny).sqrt();
            let (nx, ny) = (nx / len, ny / len);
            [nx, ny, nx * a.0 + ny * a.1]
        })
        .collect()
}

/// Whether `(px, py)` lies within `margin` of every edge line's inner side:
/// inside the hull grown by `margin` with mitred corners. False for a
/// degenerate hull.
fn within_edges(edges: &[[f32; 3]], px: f32, py: f32, margin: f32) -> bool {
    !edges.is_empty()
        && edges
            .iter()
            .all(|&[nx, ny, c]| nx * px + ny * py - c >= -margin)
}

/// Side of a [`Raster`] cell in pixels, unless the region is so large
/// that it would need more than [`MAX_CELLS`] cells a side.
const CELL: f32 = 8.0;
const MAX_CELLS: f32 = 64.0;

/// A region as a bitmap of square cells, a cell in when its centre is: a
/// point lookup costs one multiply per axis.
#[derive(Clone, Debug, PartialEq)]
struct Raster {
    /// Top-left corner and cell side in pixels.
    x0: f32,
    y0: f32,
    cell: f32,
    /// Cells per row and rows.
    w: usize,
    h: usize,
    bits: Vec<u64>,
}

impl Raster {
    /// The convex `hull` grown by `margin` with mitred corners (see
    /// [`within_edges`]), clipped to `4 · margin` around the hull's
    /// bounding box (mitres reach farther only at very sharp corners);
    /// empty for a degenerate hull.
    fn new(hull: &[(f32, f32)], margin: f32) -> Raster {
        let edges = hull_edges(hull);
        if edges.is_empty() {
            return Raster {
                x0: 0.0,
                y0: 0.0,
                cell: CELL,
                w: 0,
                h: 0,
                bits: Vec::new(),
            };
        }
        let (mut lo, mut hi) = (hull[0], hull[0]);
        for &(x, y) in hull {
            lo = (lo.0.min(x), lo.1.min(y));
            hi = (hi.0.max(x), hi.1.max(y));
        }
        // A record may put minutiae anywhere in 16 bits: bound the cells.
        let cell = ((hi.0 - lo.0).max(hi.1 - lo.1) / MAX_CELLS).max(CELL);
        let reach = 4.0 * margin + cell;
        let (x0, y0) = (lo.0 - reach, lo.1 - reach);
        let w = ((hi.0 + reach - x0) / cell).ceil() as usize;
        let h = ((hi.1 + reach - y0) / cell).ceil() as usize;
        let mut bits = vec![0u64; (w * h).div_ceil(64)];
        for cy in 0..h {
            for cx in 0..w {
                let (px, py) = (x0 + (cx as f32 + 0.5) * cell, y0 + (cy as f32 + 0.5) * cell);
                if within_edges(&edges, px, py, margin) {
                    let i = cy * w + cx;
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
        }
        Raster {
            x0,
            y0,
            cell,
            w,
            h,
            bits,
        }
    }

    /// Whether the cell holding `(px, py)` is in.
    fn contains(&self, px: f32, py: f32) -> bool {
        let (fx, fy) = ((px - self.x0) / self.cell, (py - self.y0) / self.cell);
        if !(fx >= 0.0 && fy >= 0.0) {
            return false;
        }
        let (cx, cy) = (fx as usize, fy as usize);
        if cx >= self.w || cy >= self.h {
            return false;
        }
        let i = cy * self.w + cx;
        self.bits[i / 64] >> (i % 64) & 1 == 1
    }
}

/// Whether `(px, py)` is inside the hull or within `margin` of it.
fn hull_contains(hull: &[(f32, f32)], px: f32, py: f32, margin: f32) -> bool {
    let seg_dist2 = |a: (f32, f32), b: (f32, f32)| {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (qx, qy) = (a.0 + t * dx - px, a.1 + t * dy - py);
        qx * qx + qy * qy
    };
    match hull.len() {
        0 => false,
        1 => seg_dist2(hull[0], hull[0]) <= margin * margin,
        _ => {
            let mut inside = hull.len() >= 3;
            let mut near = f32::INFINITY;
            for k in 0..hull.len() {
                let (a, b) = (hull[k], hull[(k + 1) % hull.len()]);
                if (b.0 - a.0) * (py - a.1) - (b.1 - a.1) * (px - a.0) < 0.0 {
                    inside = false;
                }
                near = near.min(seg_dist2(a, b));
            }
            inside || near <= margin * margin
        }
    }
}

impl Template {
    /// Number of minutiae.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no minutiae.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Number of usable cylinders.
    pub fn valid_cylinders(&self) -> usize {
        self.valid.iter().filter(|&&v| v).count()
    }

    /// Minutia `i`'s cylinder: cell values (zero where invalid), then
    /// energy and mask planes (see [`kernel`]).
    pub fn cylinder(&self, i: usize) -> &[u8] {
        let size = self.layout.bytes();
        &self.cells[i * size..(i + 1) * size]
    }

    /// Distance between minutiae `i` and `k` in pixels.
    pub fn distance(&self, i: usize, k: usize) -> f32 {
        self.dist[i * self.n + k]
    }

    /// Direction of minutia `i` in radians.
    pub fn angle(&self, i: usize) -> f32 {
        self.angle[i] as f32 * (TAU / 65536.0)
    }

    /// Angle from minutia `i`'s direction to the line from `i` to `k`, radians.
    pub fn radial_angle(&self, i: usize, k: usize) -> f32 {
        // `radial` holds direction − line angle.
        (self.radial[i * self.n + k].wrapping_neg()) as f32 * (TAU / 65536.0)
    }

    /// Sum of the valid cylinders' value planes.
    pub fn cylinder_sum(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.layout.dim];
        for i in (0..self.n).filter(|&i| self.valid[i]) {
            for (o, &v) in out.iter_mut().zip(&self.cylinder(i)[..self.layout.dim]) {
                *o += v as f32;
            }
        }
        out
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.n * (4 + 4 + 2 + 1 + 1 + 16)
            + self.cells.len()
            + self.dist.len() * 4
            + self.radial.len() * 2
            + self.overlap.bits.len() * 8
            + self.by_x.len() * 6
            + self.x_bins.len() * 2
    }
}

/// A candidate minutia pair.
#[derive(Clone, Copy, Debug)]
struct Pair {
    a: u16,
    b: u16,
    sim: f32,
}

/// Scores template pairs; holds the buffers so that scoring does not
/// allocate. One per thread.
#[derive(Clone, Debug)]
pub struct Matcher {
    params: Params,
    kernels: Kernels,
    pairs: Vec<Pair>,
    rho: Vec<f32>,
    lambda: Vec<f32>,
    next: Vec<f32>,
    order: Vec<usize>,
    used_a: Vec<bool>,
    used_b: Vec<bool>,
    js: Vec<u16>,
    sums: Vec<[i32; 3]>,
    keys: Vec<u64>,
    /// Best final pairs, the anchors of the global pairing.
    anchors: Vec<(usize, usize)>,
    /// Compatibility sigmoids sampled: distance difference in 1/8 px, angles in 1/1024 turn.
    lut_dist: Box<[f32; DIST_STEPS]>,
    lut_angle: Box<[[f32; 513]; 2]>,
}

/// Width of the bins that index a template's minutiae by `x` (pixels).
const X_BIN: f32 = 16.0;

const DIST_STEPS_PER_PX: f32 = 8.0;
const DIST_STEPS: usize = 512;

/// `|d|` of a turn difference in 1/1024 of a turn, `0..=512`.
fn angle_step(d: Turn) -> usize {
    ((d as i16 as i32).unsigned_abs() >> 6) as usize
}

impl Matcher {
    /// A matcher for templates made by an [`Encoder`] with the same `params`,
    /// on the process-wide SIMD kernels.
    pub fn new(params: Params) -> Matcher {
        Matcher::with_kernels(params, crate::vector::kernels())
    }

    /// A matcher on the given kernels (tests pin the scalar backend).
    pub fn with_kernels(params: Params, kernels: Kernels) -> Matcher {
        let z = |v: f32, mu: f32, tau: f32| 1.0 / (1.0 + (-tau * (v - mu)).exp());
        let lut_dist = Box::new(std::array::from_fn(|k| {
            z(
                k as f32 / DIST_STEPS_PER_PX,
                params.mu_rho[0],
                params.tau_rho[0],
            )
        }));
        let angle_lut = |which: usize| {
            std::array::from_fn(|k| {
                z(
                    k as f32 * TAU / 1024.0,
                    params.mu_rho[which],
                    params.tau_rho[which],
                )
            })
        };
        Matcher {
            params,
            kernels,
            pairs: Vec::new(),
            rho: Vec::new(),
            lambda: Vec::new(),
            next: Vec::new(),
            order: Vec::new(),
            used_a: Vec::new(),
            used_b: Vec::new(),
            js: Vec::new(),
            sums: Vec::new(),
            keys: Vec::new(),
            anchors: Vec::new(),
            lut_dist,
            lut_angle: Box::new([angle_lut(1), angle_lut(2)]),
        }
    }

    /// MCC similarity from the kernel's sums (see [`kernel`]).
    fn local(sums: [i32; 3]) -> f32 {
        let [ab, ea, eb] = sums;
        if ea == 0 || eb == 0 {
            return 0.0;
        }
        // The energy planes are scaled by 1/4.
        let (ea, eb, ab) = (ea as f32 * 4.0, eb as f32 * 4.0, ab as f32);
        let diff = (ea + eb - 2.0 * ab).max(0.0).sqrt();
        1.0 - diff / (ea.sqrt() + eb.sqrt())
    }

    /// Similarity of two templates in `[0, 1]`.
    pub fn score(&mut self, a: &Template, b: &Template) -> f32 {
        debug_assert_eq!(a.layout, b.layout, "templates of different encoders");
        let p = self.params;
        let min_cells = (p.min_matching_cells * a.n_cells as f32).ceil() as u32;
        let max_turn = (p.max_angle / TAU * 65536.0) as i32;
        self.keys.clear();
        for i in (0..a.n).filter(|&i| a.valid[i]) {
            // Cheap filters first: direction difference and shared cells.
            self.js.clear();
            kernel::candidates(
                self.kernels,
                a.angle[i],
                a.masks[i],
                &b.angle,
                &b.masks,
                &b.valid,
                max_turn,
                min_cells,
                &mut self.js,
            );
            self.sums.resize(self.js.len(), [0; 3]);
            kernel::one_to_many(
                self.kernels,
                a.cylinder(i),
                &b.cells,
                a.layout,
                &self.js,
                &mut self.sums,
            );
            for (&j, &sums) in self.js.iter().zip(&self.sums) {
                let sim = Self::local(sums);
                if sim > 0.0 {
                    // Larger keys are better: similarity bits (non-negative
                    // floats order like their bits), then smaller indices.
                    let tie = !((i as u32) << 16 | j as u32);
                    self.keys.push((sim.to_bits() as u64) << 32 | tie as u64);
                }
            }
        }
        let n_min = a.valid_cylinders().min(b.valid_cylinders());
        let nr = n_min.min(p.max_relaxed).min(self.keys.len());
        if nr < 2 {
            return 0.0;
        }
        // The nR most similar pairs, best first.
        if nr < self.keys.len() {
            let len = self.keys.len();
            self.keys.select_nth_unstable(len - nr);
            self.keys.drain(..len - nr);
        }
        self.keys.sort_unstable_by(|x, y| y.cmp(x));
        self.pairs.clear();
        self.pairs.extend(self.keys.iter().map(|&k| {
            let ij = !(k as u32);
            Pair {
                a: (ij >> 16) as u16,
                b: ij as u16,
                sim: f32::from_bits((k >> 32) as u32),
            }
        }));

        // Pairwise compatibility.
        self.rho.clear();
        self.rho.resize(nr * nr, 0.0);
        for s in 0..nr {
            let (ai, bi) = (self.pairs[s].a as usize, self.pairs[s].b as usize);
            for t in s + 1..nr {
                let (ak, bk) = (self.pairs[t].a as usize, self.pairs[t].b as usize);
                if ai == ak || bi == bk {
                    continue;
                }
                let (da, db) = (a.dist[ai * a.n + ak], b.dist[bi * b.n + bk]);
                let d1 = (da - db).abs() / (1.0 + p.dist_slack * (da + db));
                let r1 = self.lut_dist[((d1 * DIST_STEPS_PER_PX) as usize).min(DIST_STEPS - 1)];
                if r1 < 1e-4 {
                    continue;
                }
                let d2 = a.angle[ai]
                    .wrapping_sub(a.angle[ak])
                    .wrapping_sub(b.angle[bi].wrapping_sub(b.angle[bk]));
                let d3 = a.radial[ai * a.n + ak].wrapping_sub(b.radial[bi * b.n + bk]);
                let rho =
                    r1 * self.lut_angle[0][angle_step(d2)] * self.lut_angle[1][angle_step(d3)];
                self.rho[s * nr + t] = rho;
                self.rho[t * nr + s] = rho;
            }
        }
        // Relaxation.
        self.lambda.clear();
        self.lambda.extend(self.pairs.iter().map(|q| q.sim));
        self.next.resize(nr, 0.0);
        let w = p.relax_weight;
        let spread = (1.0 - w) / (nr - 1) as f32;
        for _ in 0..p.relax_rounds {
            // next = w·λ + spread·(ρ λ); ρ is symmetric, so ρ λ is a sum of
            // rows scaled by λ (an axpy that vectorises, no reductions).
            for (n, l) in self.next.iter_mut().zip(&self.lambda) {
                *n = w * l;
            }
            for (row, &l) in self.rho.chunks_exact(nr).zip(&self.lambda) {
                let f = spread * l;
                for (n, r) in self.next.iter_mut().zip(row) {
                    *n += f * r;
                }
            }
            std::mem::swap(&mut self.lambda, &mut self.next);
        }
        // The nP pairs that gained most, one to one.
        let (lo, hi) = p.n_pairs;
        let z = 1.0 / (1.0 + (-p.mu_tau_pairs.1 * (n_min as f32 - p.mu_tau_pairs.0)).exp());
        let np = lo + (z * (hi - lo) as f32).round() as usize;
        self.order.clear();
        self.order.extend(0..nr);
        let (lambda, pairs) = (&self.lambda, &self.pairs);
        self.order.sort_unstable_by(|&x, &y| {
            let ex = lambda[x] / pairs[x].sim;
            let ey = lambda[y] / pairs[y].sim;
            ey.total_cmp(&ex).then(x.cmp(&y))
        });
        self.used_a.clear();
        self.used_a.resize(a.n, false);
        self.used_b.clear();
        self.used_b.resize(b.n, false);
        let (mut sum, mut taken) = (0.0, 0);
        self.anchors.clear();
        for &s in &self.order {
            let (i, j) = (pairs[s].a as usize, pairs[s].b as usize);
            if self.used_a[i] || self.used_b[j] {
                continue;
            }
            self.used_a[i] = true;
            self.used_b[j] = true;
            sum += lambda[s];
            taken += 1;
            if taken <= p.global_anchors {
                self.anchors.push((i, j));
            }
            if taken == np {
                break;
            }
        }
        let lss = (sum / np as f32).clamp(0.0, 1.0);
        if p.global_weight <= 0.0 {
            return lss;
        }
        let g = self.global(a, b);
        lss.powf(1.0 - p.global_weight) * g.powf(p.global_weight)
    }

    /// The global pairing score in `[0, 1]`: the best over the anchors'
    /// alignments of `m² / (nA · nB)`, where `m` minutiae pair one to one
    /// once `a` is moved onto `b` and `nA`, `nB` count the minutiae in the
    /// overlap of the two hulls (at least `min_overlap`).
    fn global(&mut self, a: &Template, b: &Template) -> f32 {
        let p = self.params;
        let tol = p.pair_tolerance.0;
        let max_turn = (p.pair_tolerance.1 / TAU * 65536.0) as i32;
        let floor = p.min_overlap.max(1) as f32;
        let mut best = 0.0f32;
        for k in 0..self.anchors.len() {
            let (i, j) = self.anchors[k];
            let turn = b.angle[j].wrapping_sub(a.angle[i]);
            // Counter-clockwise on the image (rows grow downwards).
            let (s, c) = turn_diff(turn, 0).sin_cos();
            // Candidate pairs nearest first, ties by index: `a`'s minutiae
            // moved onto `b`, against `b`'s within `tol` in `x`.
            self.keys.clear();
            let mut na = 0usize;
            for ka in 0..a.n {
                let (dx, dy) = (a.x[ka] - a.x[i], a.y[ka] - a.y[i]);
                let (x, y) = (b.x[j] + dx * c + dy * s, b.y[j] - dx * s + dy * c);
                na += b.overlap.contains(x, y) as usize;
                let angle = a.angle[ka].wrapping_add(turn);
                let bin = ((x - tol).max(0.0) / X_BIN) as usize;
                let mut from = b.x_bins[bin.min(b.x_bins.len() - 1)] as usize;
                while from < b.n && b.sorted_x[from] < x - tol {
                    from += 1;
                }
                for (&bx, &kb) in b.sorted_x[from..].iter().zip(&b.by_x[from..]) {
                    if bx > x + tol {
                        break;
                    }
                    let kb = kb as usize;
                    let d2 = (bx - x).powi(2) + (b.y[kb] - y).powi(2);
                    if d2 <= tol * tol
                        && (angle.wrapping_sub(b.angle[kb]) as i16 as i32).abs() <= max_turn
                    {
                        self.keys
                            .push((d2.to_bits() as u64) << 32 | (ka as u64) << 16 | kb as u64);
                    }
                }
            }
            // `b`'s minutiae moved back into `a`'s frame.
            let nb = (0..b.n)
                .filter(|&kb| {
                    let (dx, dy) = (b.x[kb] - b.x[j], b.y[kb] - b.y[j]);
                    let (x, y) = (a.x[i] + dx * c - dy * s, a.y[i] + dx * s + dy * c);
                    a.overlap.contains(x, y)
                })
                .count();
            self.keys.sort_unstable();
            self.used_a.clear();
            self.used_a.resize(a.n, false);
            self.used_b.clear();
            self.used_b.resize(b.n, false);
            let mut m = 0usize;
            for &key in &self.keys {
                let (ka, kb) = ((key >> 16) as u16 as usize, key as u16 as usize);
                if !self.used_a[ka] && !self.used_b[kb] {
                    self.used_a[ka] = true;
                    self.used_b[kb] = true;
                    m += 1;
                }
            }
            let (na, nb) = (na as f32, nb as f32);
            best = best.max((m * m) as f32 / (na.max(floor) * nb.max(floor)));
        }
        best.min(1.0)
    }
}

#[cfg(test)]
mod tests;
