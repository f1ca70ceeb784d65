//! Bounded best-k selection with a deterministic order.
//!
//! Entries are ranked by key (higher is better), ties by id (lower is
//! better), so results do not depend on how the scan was split across
//! threads. Keys compare with `f32::total_cmp`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A key (higher is better) with the row id (and label) it belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scored {
    pub(crate) key: f32,
    pub(crate) id: u64,
    pub(crate) label: u64,
}

impl Scored {
    /// Rank order: `Less` means `self` ranks before (is better than) `other`.
    pub(crate) fn rank_cmp(&self, other: &Scored) -> Ordering {
        other
            .key
            .total_cmp(&self.key)
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// Heap entry whose maximum is the worst-ranked element.
#[derive(Clone, Copy, Debug)]
struct Worst(Scored);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Worst {}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank_cmp(&other.0)
    }
}

/// The best `k` entries seen so far.
#[derive(Clone, Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
        }
    }

    /// Offers an entry; keeps it if it ranks among the best `k`.
    pub(crate) fn push(&mut self, s: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(Worst(s));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && s.rank_cmp(&worst.0) == Ordering::Less
        {
            *worst = Worst(s);
        }
    }

    /// The worst kept key once `k` entries are held: anything ranked below
    /// it cannot enter. `None` while fewer than `k` are held.
    pub(crate) fn floor(&self) -> Option<f32> {
        if self.heap.len() < self.k || self.k == 0 {
            None
        } else {
            self.heap.peek().map(|w| w.0.key)
        }
    }

    /// Adds all entries of `other`.
    pub(crate) fn merge(&mut self, other: TopK) {
        for w in other.heap {
            self.push(w.0);
        }
    }

    /// The kept entries, best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(Scored::rank_cmp);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(key: f32, id: u64) -> Scored {
        Scored { key, id, label: id }
    }

    #[test]
    fn keeps_the_best_with_ties_broken_by_lower_id() {
        let mut t = TopK::new(3);
        for (k, id) in [(0.5, 9), (0.9, 1), (0.5, 3), (0.1, 0), (0.5, 2), (0.7, 5)] {
            t.push(s(k, id));
        }
        assert_eq!(t.floor(), Some(0.5));
        assert_eq!(t.into_sorted(), vec![s(0.9, 1), s(0.7, 5), s(0.5, 2)]);
    }

    #[test]
    fn merge_equals_one_pass() {
        let entries: Vec<Scored> = (0..100u64).map(|i| s(((i * 37) % 17) as f32, i)).collect();
        let mut whole = TopK::new(10);
        entries.iter().for_each(|&e| whole.push(e));
        let (mut a, mut b) = (TopK::new(10), TopK::new(10));
        for (i, &e) in entries.iter().enumerate() {
            if i % 3 == 0 { a.push(e) } else { b.push(e) }
        }
        a.merge(b);
        assert_eq!(a.into_sorted(), whole.into_sorted());
    }

    #[test]
    fn zero_k_keeps_nothing() {
        let mut t = TopK::new(0);
        t.push(s(1.0, 1));
        assert!(t.into_sorted().is_empty());
    }
}
