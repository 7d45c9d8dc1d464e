//! The memory planner: transient tensors whose live ranges do not overlap share a buffer slot.
//! Pure data in, pure data out; no wgpu.

use std::collections::HashMap;

use crate::graph::Schedule;
use crate::ir::TensorId;

/// Live range of one transient tensor, as step indices (inclusive), and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveRange {
    /// Step that first touches it.
    pub first: usize,
    /// Step that last touches it.
    pub last: usize,
    /// Size in bytes.
    pub bytes: u64,
}

/// Where every transient tensor of one schedule lives.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// Slot of each transient storage tensor.
    pub slot_of: HashMap<TensorId, usize>,
    /// Size of each slot in bytes.
    pub slot_bytes: Vec<u64>,
}

impl MemoryPlan {
    /// Total bytes of all slots.
    pub fn total_bytes(&self) -> u64 {
        self.slot_bytes.iter().sum()
    }
}

/// Plans the transient tensors of `schedule`.
pub fn plan(schedule: &Schedule) -> MemoryPlan {
    let mut tensors: Vec<TensorId> = schedule.live.keys().copied().collect();
    tensors.sort(); // Deterministic plans for deterministic tests.
    let ranges: Vec<LiveRange> = tensors.iter().map(|t| schedule.live[t]).collect();
    let (slots, slot_bytes) = assign_slots(&ranges);
    MemoryPlan {
        slot_of: tensors.into_iter().zip(slots).collect(),
        slot_bytes,
    }
}

/// Gives every range a slot so that ranges alive at the same time never share one. Greedy by
/// size: large tensors choose first and take the smallest free slot that already fits them,
/// else the largest free one (which then grows). Returns (slot per range, bytes per slot).
pub fn assign_slots(ranges: &[LiveRange]) -> (Vec<usize>, Vec<u64>) {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&r| (std::cmp::Reverse(ranges[r].bytes), r));

    let mut slot_of = vec![usize::MAX; ranges.len()];
    let mut slot_bytes: Vec<u64> = Vec::new();
    let mut slot_users: Vec<Vec<usize>> = Vec::new();
    for r in order {
        let free = (0..slot_bytes.len()).filter(|&s| {
            slot_users[s]
                .iter()
                .all(|&u| !overlaps(ranges[r], ranges[u]))
        });
        let need = ranges[r].bytes;
        let slot = free.min_by_key(|&s| {
            (
                slot_bytes[s] < need,
                if slot_bytes[s] >= need {
                    slot_bytes[s]
                } else {
                    u64::MAX - slot_bytes[s]
                },
            )
        });
        let slot = slot.unwrap_or_else(|| {
            slot_bytes.push(0);
            slot_users.push(Vec::new());
            slot_bytes.len() - 1
        });
        slot_bytes[slot] = slot_bytes[slot].max(need);
        slot_users[slot].push(r);
        slot_of[r] = slot;
    }
    (slot_of, slot_bytes)
}

/// True when two inclusive ranges share a step.
pub fn overlaps(a: LiveRange, b: LiveRange) -> bool {
    a.first <= b.last && b.first <= a.last
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn disjoint_ranges_share_and_overlapping_do_not() {
        let r = |first, last, bytes| LiveRange { first, last, bytes };
        let (slots, bytes) = assign_slots(&[r(0, 1, 100), r(2, 3, 100), r(1, 2, 50)]);
        assert_eq!(slots[0], slots[1]);
        assert_ne!(slots[0], slots[2]);
        assert_eq!(bytes.iter().sum::<u64>(), 150);
    }

    proptest! {
        #[test]
        fn live_tensors_never_share_a_slot(raw in prop::collection::vec((0..40usize, 0..8usize, 1..4096u64), 1..60)) {
            let ranges: Vec<LiveRange> =
                raw.iter().map(|&(first, len, bytes)| LiveRange { first, last: first + len, bytes }).collect();
            let (slot_of, slot_bytes) = assign_slots(&ranges);
            for (a, ra) in ranges.iter().enumerate() {
                prop_assert!(slot_bytes[slot_of[a]] >= ra.bytes);
                for (b, rb) in ranges.iter().enumerate().skip(a + 1) {
                    prop_assert!(!(slot_of[a] == slot_of[b] && overlaps(*ra, *rb)));
                }
            }
        }
    }
}
