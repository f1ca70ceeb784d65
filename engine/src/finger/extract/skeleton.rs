//! Ridge skeletons: Zhang–Suen thinning, a clean-up pass that leaves every
//! ridge one 8-connected pixel wide, and walks along the skeleton.
//!
//! Neighbourhoods are coded as 8 bits, clockwise from north: bit 0 N,
//! 1 NE, 2 E, 3 SE, 4 S, 5 SW, 6 W, 7 NW.

use std::sync::OnceLock;

/// Offsets `(dx, dy)` of the eight neighbours in code order.
pub(super) const NEIGHBOURS: [(isize, isize); 8] = [
    (0, -1),
    (1, -1),
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
    (-1, 0),
    (-1, -1),
];

/// A binary image with a one-pixel empty frame, so neighbours never leave it.
pub(super) struct Skeleton {
    /// Width including the frame.
    pub(super) w: usize,
    /// 1 on skeleton pixels.
    pub(super) px: Vec<u8>,
}

/// Per neighbourhood code: fg neighbour count, number of 8-connected groups
/// of fg neighbours, and Zhang–Suen's deletability in each sub-iteration.
struct Tables {
    count: [u8; 256],
    groups: [u8; 256],
    zhang_suen: [[bool; 256]; 2],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Tables {
            count: [0; 256],
            groups: [0; 256],
            zhang_suen: [[false; 256]; 2],
        };
        for code in 0..256usize {
            let bit = |i: usize| (code >> (i % 8)) & 1 == 1;
            let count = (0..8).filter(|&i| bit(i)).count();
            // Groups: set neighbours joined when 8-adjacent to each other
            // (consecutive in the ring, or two 4-neighbours around a corner).
            let mut parent: [usize; 8] = std::array::from_fn(|i| i);
            fn root(p: &mut [usize; 8], mut i: usize) -> usize {
                while p[i] != i {
                    i = p[i];
                }
                i
            }
            for (i, &a) in NEIGHBOURS.iter().enumerate() {
                for (j, &b) in NEIGHBOURS.iter().enumerate().skip(i + 1) {
                    if bit(i) && bit(j) && (a.0 - b.0).abs() <= 1 && (a.1 - b.1).abs() <= 1 {
                        let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                        parent[ri] = rj;
                    }
                }
            }
            let groups = (0..8)
                .filter(|&i| bit(i) && root(&mut parent, i) == i)
                .count();
            // Zhang–Suen: P2..P9 = N, NE, E, SE, S, SW, W, NW.
            let transitions = (0..8).filter(|&i| !bit(i) && bit(i + 1)).count();
            let (n, e, s, w) = (bit(0), bit(2), bit(4), bit(6));
            let base = (2..=6).contains(&count) && transitions == 1;
            t.count[code] = count as u8;
            t.groups[code] = groups as u8;
            t.zhang_suen[0][code] = base && !(n && e && s) && !(e && s && w);
            t.zhang_suen[1][code] = base && !(n && e && w) && !(n && s && w);
        }
        t
    })
}

impl Skeleton {
    /// Thins the ridge map `ridges` (`w × h`, row-major).
    pub(super) fn thin(ridges: &[bool], w: usize, h: usize) -> Skeleton {
        let (fw, fh) = (w + 2, h + 2);
        let mut px = vec![0u8; fw * fh];
        let mut live = Vec::new();
        for y in 0..h {
            for x in 0..w {
                if ridges[y * w + x] {
                    let i = (y + 1) * fw + x + 1;
                    px[i] = 1;
                    live.push(i);
                }
            }
        }
        let mut s = Skeleton { w: fw, px };
        let t = tables();
        // Each pixel's neighbourhood code, kept up to date as pixels go
        // (a removal clears its bit in its eight neighbours' codes): one
        // load per pixel and pass instead of eight.
        let mut codes = vec![0u8; s.px.len()];
        for &i in &live {
            codes[i] = s.code(i) as u8;
        }
        let offsets = NEIGHBOURS.map(|(dx, dy)| dy * fw as isize + dx);
        let mut doomed = Vec::new();
        loop {
            let mut changed = false;
            for table in &t.zhang_suen {
                // Split `live` into the pixels this pass removes and those
                // it keeps (in order), deciding on the codes from before it.
                doomed.clear();
                live.retain(|&i| {
                    let go = table[codes[i] as usize];
                    if go {
                        doomed.push(i);
                    }
                    !go
                });
                for &i in &doomed {
                    s.px[i] = 0;
                    // Neighbour `b` of `i` sees `i` as its neighbour `b + 4`.
                    for (b, &o) in offsets.iter().enumerate() {
                        let j = (i as isize + o) as usize;
                        codes[j] &= !(1 << ((b + 4) % 8));
                    }
                }
                changed |= !doomed.is_empty();
            }
            if !changed {
                break;
            }
        }
        // Zhang–Suen leaves two-pixel staircases; drop every pixel whose
        // set neighbours stay connected without it (a simple point that is
        // neither an end nor interior).
        for &i in &live {
            let code = s.code(i);
            if t.groups[code] == 1 && (2..=6).contains(&t.count[code]) && s.has_4_background(i) {
                s.px[i] = 0;
            }
        }
        s
    }

    /// Neighbourhood code of the pixel at frame index `i`.
    pub(super) fn code(&self, i: usize) -> usize {
        let mut code = 0;
        for (b, &(dx, dy)) in NEIGHBOURS.iter().enumerate() {
            let j = (i as isize + dy * self.w as isize + dx) as usize;
            code |= (self.px[j] as usize) << b;
        }
        code
    }

    fn has_4_background(&self, i: usize) -> bool {
        self.px[i - 1] == 0
            || self.px[i + 1] == 0
            || self.px[i - self.w] == 0
            || self.px[i + self.w] == 0
    }

    /// Number of skeleton neighbours of pixel `i`.
    pub(super) fn count(&self, i: usize) -> u8 {
        tables().count[self.code(i)]
    }

    /// Number of branches leaving pixel `i` (8-connected groups of neighbours).
    pub(super) fn branches(&self, i: usize) -> u8 {
        tables().groups[self.code(i)]
    }

    /// Frame index of the neighbour in direction `n` (0..8) of pixel `i`.
    pub(super) fn step(&self, i: usize, n: usize) -> usize {
        let (dx, dy) = NEIGHBOURS[n];
        (i as isize + dy * self.w as isize + dx) as usize
    }

    /// Image coordinates (without the frame) of frame index `i`.
    pub(super) fn xy(&self, i: usize) -> (f32, f32) {
        ((i % self.w) as f32 - 1.0, (i / self.w) as f32 - 1.0)
    }

    /// One start pixel per branch leaving `i`: a 4-neighbour of each
    /// group if it has one.
    pub(super) fn branch_starts(&self, i: usize) -> Vec<usize> {
        let mut starts: Vec<usize> = Vec::with_capacity(4);
        let set: Vec<usize> = (0..8).filter(|&n| self.px[self.step(i, n)] == 1).collect();
        let mut taken = [false; 8];
        for &n in &set {
            if taken[n] {
                continue;
            }
            // The group of `n`: flood over 8-adjacent set neighbours.
            let mut group = vec![n];
            taken[n] = true;
            let mut k = 0;
            while k < group.len() {
                let a = NEIGHBOURS[group[k]];
                for &m in &set {
                    let b = NEIGHBOURS[m];
                    if !taken[m] && (a.0 - b.0).abs() <= 1 && (a.1 - b.1).abs() <= 1 {
                        taken[m] = true;
                        group.push(m);
                    }
                }
                k += 1;
            }
            let pick = group
                .iter()
                .copied()
                .find(|&g| g % 2 == 0)
                .unwrap_or(group[0]);
            starts.push(self.step(i, pick));
        }
        starts
    }

    /// Walks from `origin` into the branch starting at `start` for at most
    /// `max_steps` pixels, stopping at a pixel `stop` accepts (another
    /// minutia) or at a dead end. `avoid` are pixels not to enter (the
    /// origin's other branches).
    pub(super) fn walk(
        &self,
        origin: usize,
        start: usize,
        avoid: &[usize],
        max_steps: usize,
        stop: impl Fn(usize) -> bool,
    ) -> Walk {
        let mut path = vec![start];
        let mut cur = start;
        loop {
            if stop(cur) {
                return Walk { path, hit: true };
            }
            if path.len() >= max_steps {
                break;
            }
            let next = [0, 2, 4, 6, 1, 3, 5, 7]
                .into_iter()
                .map(|n| self.step(cur, n))
                .find(|&j| {
                    self.px[j] == 1 && j != origin && !path.contains(&j) && !avoid.contains(&j)
                });
            let Some(j) = next else { break };
            path.push(j);
            cur = j;
        }
        Walk { path, hit: false }
    }
}

/// A walk along a ridge.
pub(super) struct Walk {
    /// Frame indices of the pixels walked, from the first step on.
    pub(super) path: Vec<usize>,
    /// Whether it stopped on a pixel the stop predicate accepted (the
    /// path's last pixel).
    pub(super) hit: bool,
}

impl Walk {
    /// The last pixel.
    pub(super) fn end(&self) -> usize {
        *self.path.last().expect("a walk takes at least one step")
    }
}
