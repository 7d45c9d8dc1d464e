//! Profiling: the seconds each dispatch of a program takes, timed by GPU timestamps or by the
//! host clock ([`ProfileMethod`]). For development and reports only: unlike a run, a profile
//! creates GPU objects and waits for the device.

use super::bake::{BakedDispatch, Program};
use super::{Executable, ProgramId};
use crate::{Error, Result};

/// How dispatches are timed by [`Executable::profile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileMethod {
    /// Timestamp queries at the start and end of each dispatch's pass, on the device.
    Timestamps,
    /// The host clock around each dispatch, submitted and waited for on its own.
    HostSynced,
    /// The host clock around `n` copies of each dispatch in one submission, divided by `n`:
    /// the submission's fixed cost shrinks to `1/n`. A development aid: ops that update
    /// state in place (optimizers) run `n` times, so parameters move.
    HostRepeated(u32),
}

impl std::fmt::Display for ProfileMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProfileMethod::Timestamps => "GPU timestamps around each dispatch",
            ProfileMethod::HostSynced => {
                "host clock around each dispatch, synced on its own, so the sum is a little above a pipelined step"
            }
            ProfileMethod::HostRepeated(_) => {
                "host clock around repeated copies of each dispatch in one submission"
            }
        })
    }
}

impl Executable {
    /// How [`Executable::profile`] times dispatches on this adapter: GPU timestamps where it
    /// has them, except on CPU adapters. There the host clock is the device's clock, and
    /// lavapipe writes a pass's end timestamp when the dispatch is handed to its threads, not
    /// when it finishes (measured: a 30 ms LeNet-5 step summed to 11 ms, most of it charged
    /// to whichever dispatch waited next).
    pub fn profile_method(&self) -> ProfileMethod {
        let cpu = self.gpu.adapter_info().device_type == wgpu::DeviceType::Cpu;
        if self.gpu.timestamp_period().is_some() && !cpu {
            ProfileMethod::Timestamps
        } else {
            ProfileMethod::HostSynced
        }
    }

    /// Seconds each dispatch of one run of `program` takes, by label, in order: from GPU
    /// timestamps around each dispatch where the adapter has them, otherwise from the host
    /// clock with a sync after each dispatch ([`Executable::profile_method`]); the host clock
    /// also times the input-to-texture copies, listed first, which timestamps leave out. It
    /// has the effect of one normal run. For profiling only: it creates a query set and
    /// buffers.
    pub fn profile(&self, program: ProgramId) -> Result<Vec<(String, f64)>> {
        self.profile_with(program, self.profile_method())
    }

    /// [`Executable::profile`] with a chosen method (timestamps need the adapter's support).
    pub fn profile_with(
        &self,
        program: ProgramId,
        method: ProfileMethod,
    ) -> Result<Vec<(String, f64)>> {
        let p = &self.programs[program.0];
        self.gpu.wait()?;
        match method {
            ProfileMethod::HostSynced => self.profile_host(p, 1),
            ProfileMethod::HostRepeated(r) => self.profile_host(p, r.max(1)),
            ProfileMethod::Timestamps => {
                let period = self.gpu.timestamp_period().ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{} has no timestamp queries",
                        self.gpu.describe()
                    ))
                })?;
                self.profile_timestamps(p, period)
            }
        }
    }

    /// [`Executable::profile_with`] on the host clock: each copy, then each dispatch,
    /// recorded `repeat` times in a submission of its own and waited for.
    fn profile_host(&self, p: &Program, repeat: u32) -> Result<Vec<(String, f64)>> {
        let mut res = Vec::new();
        for copy in &p.copies {
            let start = std::time::Instant::now();
            let mut encoder = self.gpu.encoder(&copy.label);
            for _ in 0..repeat {
                copy.record(&mut encoder);
            }
            self.gpu.submit(encoder);
            self.gpu.wait()?;
            res.push((
                copy.label.clone(),
                start.elapsed().as_secs_f64() / f64::from(repeat),
            ));
        }
        for d in &p.dispatches {
            let start = std::time::Instant::now();
            let mut encoder = self.gpu.encoder(&d.label);
            for _ in 0..repeat {
                record(&mut encoder, d, None);
            }
            self.gpu.submit(encoder);
            self.gpu.wait()?;
            res.push((
                d.label.clone(),
                start.elapsed().as_secs_f64() / f64::from(repeat),
            ));
        }
        Ok(res)
    }

    /// [`Executable::profile_with`] on GPU timestamps, `period` nanoseconds a tick.
    fn profile_timestamps(&self, p: &Program, period: f64) -> Result<Vec<(String, f64)>> {
        // One pass per dispatch, a timestamp at its start and end, all in one submission.
        let n = p.dispatches.len() as u32;
        let queries = self.gpu.create_timestamp_queries("profile", 2 * n);
        let bytes = u64::from(2 * n) * 8;
        let resolved = self.gpu.create_buffer(
            "profile timestamps",
            bytes,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        );
        let mut encoder = self.gpu.encoder("profile");
        // Copies are recorded (the dispatches read what they write) but not timed: timestamps
        // here bracket compute passes only.
        for copy in &p.copies {
            copy.record(&mut encoder);
        }
        for (i, d) in p.dispatches.iter().enumerate() {
            record(&mut encoder, d, Some((&queries, 2 * i as u32)));
        }
        encoder.resolve_query_set(&queries, 0..2 * n, &resolved, 0);
        self.gpu.submit(encoder);
        let raw = self.gpu.read_buffer(&resolved, bytes)?;
        let ticks: &[u64] = bytemuck::cast_slice(&raw);
        Ok(p.dispatches
            .iter()
            .zip(ticks.chunks_exact(2))
            .map(|(d, t)| {
                (
                    d.label.clone(),
                    t[1].saturating_sub(t[0]) as f64 * period * 1e-9,
                )
            })
            .collect())
    }
}

/// Records one dispatch in its own compute pass, with timestamps at `queries[first]` and
/// `queries[first + 1]` when given.
fn record(
    encoder: &mut wgpu::CommandEncoder,
    d: &BakedDispatch,
    timestamps: Option<(&wgpu::QuerySet, u32)>,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(&d.label),
        timestamp_writes: timestamps.map(|(query_set, first)| wgpu::ComputePassTimestampWrites {
            query_set,
            beginning_of_pass_write_index: Some(first),
            end_of_pass_write_index: Some(first + 1),
        }),
    });
    pass.set_pipeline(&d.pipeline);
    pass.set_bind_group(0, &d.bind_group, &[]);
    let [x, y, z] = d.workgroups;
    pass.dispatch_workgroups(x, y, z);
}
