//! Counters of GPU work that tests assert on: objects created, bytes moved, submissions and
//! blocking waits. Every wgpu call that creates or moves something goes through `GpuContext`,
//! which bumps these.

use std::ops::Sub;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the counters; subtract two to get the work in between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Buffers created.
    pub buffers_created: u64,
    /// Textures created.
    pub textures_created: u64,
    /// Bind groups created.
    pub bind_groups_created: u64,
    /// Compute pipelines created (cache misses).
    pub pipelines_created: u64,
    /// Bytes written host → GPU.
    pub bytes_uploaded: u64,
    /// Bytes read GPU → host.
    pub bytes_downloaded: u64,
    /// Queue submissions.
    pub submissions: u64,
    /// Times the host blocked waiting for the GPU to read something back or to sync.
    pub blocking_waits: u64,
    /// Times a run waited for an older submission because too many were in flight (the host
    /// running ahead of the GPU); this bounds staging memory and reads nothing.
    pub backpressure_waits: u64,
}

impl Counters {
    /// Buffers, textures, bind groups and pipelines created.
    pub fn gpu_objects_created(&self) -> u64 {
        self.buffers_created
            + self.textures_created
            + self.bind_groups_created
            + self.pipelines_created
    }
}

impl Sub for Counters {
    type Output = Counters;

    fn sub(self, rhs: Counters) -> Counters {
        Counters {
            buffers_created: self.buffers_created - rhs.buffers_created,
            textures_created: self.textures_created - rhs.textures_created,
            bind_groups_created: self.bind_groups_created - rhs.bind_groups_created,
            pipelines_created: self.pipelines_created - rhs.pipelines_created,
            bytes_uploaded: self.bytes_uploaded - rhs.bytes_uploaded,
            bytes_downloaded: self.bytes_downloaded - rhs.bytes_downloaded,
            submissions: self.submissions - rhs.submissions,
            blocking_waits: self.blocking_waits - rhs.blocking_waits,
            backpressure_waits: self.backpressure_waits - rhs.backpressure_waits,
        }
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    pub(crate) buffers_created: AtomicU64,
    pub(crate) textures_created: AtomicU64,
    pub(crate) bind_groups_created: AtomicU64,
    pub(crate) pipelines_created: AtomicU64,
    pub(crate) bytes_uploaded: AtomicU64,
    pub(crate) bytes_downloaded: AtomicU64,
    pub(crate) submissions: AtomicU64,
    pub(crate) blocking_waits: AtomicU64,
    pub(crate) backpressure_waits: AtomicU64,
}

impl CounterCells {
    pub(crate) fn bump(cell: &AtomicU64, by: u64) {
        cell.fetch_add(by, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            buffers_created: get(&self.buffers_created),
            textures_created: get(&self.textures_created),
            bind_groups_created: get(&self.bind_groups_created),
            pipelines_created: get(&self.pipelines_created),
            bytes_uploaded: get(&self.bytes_uploaded),
            bytes_downloaded: get(&self.bytes_downloaded),
            submissions: get(&self.submissions),
            blocking_waits: get(&self.blocking_waits),
            backpressure_waits: get(&self.backpressure_waits),
        }
    }
}
