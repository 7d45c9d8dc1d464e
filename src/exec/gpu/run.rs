//! Using a built executable: replaying a program (`run`), writing persistent tensors, reading
//! tensors back (a staging buffer per read, or the preallocated one for small reads, which
//! may also run in the background), and what it holds (memory per program, dispatch labels).

use super::{Executable, ProgramId, SMALL_READ_BYTES};
use crate::gpu::MappingReceiver;
use crate::ir::{CpuTensor, TensorId};
use crate::{Error, Result};

/// A read of a small tensor into `small_staging`, mapping in the background.
pub(super) struct PendingRead {
    tensor: TensorId,
    done: MappingReceiver,
}

/// Runs allowed in flight before `run` waits for the oldest: enough to keep the GPU fed
/// while the host prepares the next batch, few enough to bound staging memory.
const MAX_IN_FLIGHT: usize = 3;

impl Executable {
    /// Records every dispatch of a program into one compute pass and submits it. Creates no
    /// GPU object and reads nothing back; waits only when `MAX_IN_FLIGHT` runs are unfinished.
    pub fn run(&self, program: ProgramId) -> Result<()> {
        self.check_program(program)?;
        let p = &self.programs[program.0];
        let mut encoder = self.gpu.encoder(&p.name);
        for copy in &p.copies {
            copy.record(&mut encoder);
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&p.name),
                timestamp_writes: None,
            });
            for d in &p.dispatches {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                let [x, y, z] = d.workgroups;
                pass.dispatch_workgroups(x, y, z);
            }
        }
        let submission = self.gpu.submit(encoder);
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        in_flight.push_back(submission);
        if in_flight.len() > MAX_IN_FLIGHT {
            let oldest = in_flight.pop_front().expect("non-empty");
            self.gpu.wait_for(oldest)?;
        }
        Ok(())
    }

    /// Writes a persistent tensor (an input batch, or a parameter) from host memory.
    pub fn write(&self, t: TensorId, bytes: &[u8]) -> Result<()> {
        let buffer = self.persistent_buffer(t)?;
        let want = self.shapes[t.0 as usize].bytes();
        if bytes.len() as u64 != want {
            return Err(Error::InvalidArgument(format!(
                "{}: got {} bytes, shape {} needs {want}",
                self.names[t.0 as usize],
                bytes.len(),
                self.shapes[t.0 as usize]
            )));
        }
        self.gpu.write_buffer(buffer, 0, bytes);
        Ok(())
    }

    /// Reads a tensor back, after `program` ran (transient tensors live in its slots).
    /// Creates a staging buffer: for tests, checkpoints and inspection, not per step.
    pub fn read(&self, program: ProgramId, t: TensorId) -> Result<CpuTensor> {
        self.check_program(program)?;
        self.check_tensor(t)?;
        let p = &self.programs[program.0];
        let root = p.schedule.storage[t.0 as usize];
        if !self.persistent.contains_key(&root) && !p.plan.slot_of.contains_key(&root) {
            return Err(Error::InvalidArgument(format!(
                "{} is not computed by program {}",
                self.names[t.0 as usize], p.name
            )));
        }
        let shape = &self.shapes[t.0 as usize];
        let bytes = self.gpu.read_buffer(
            self.buffer_in(&p.schedule, &p.plan, &p.slots, t),
            shape.bytes(),
        )?;
        Ok(CpuTensor::from_bytes(shape, &bytes))
    }

    /// Reads a small persistent tensor (at most 256 bytes, e.g. metrics) through the
    /// preallocated staging buffer, then zeroes it on the GPU. Creates nothing; downloads
    /// exactly the tensor's bytes. Waits for the GPU; a read still pending from
    /// [`Executable::request_small`] must be collected first ([`Executable::wait_small`]).
    pub fn take_small(&self, t: TensorId) -> Result<CpuTensor> {
        self.request_small(t)?;
        self.wait_small()?
            .map(|(_, v)| v)
            .ok_or_else(|| Error::Readback("the small read vanished".into()))
    }

    /// Starts reading a small persistent tensor (as [`Executable::take_small`]: copy, then
    /// zero it on the GPU) without waiting: the copy is queued behind the runs already
    /// submitted, and [`Executable::poll_small`] collects it once they are done, so training
    /// can go on meanwhile. One read may be pending at a time.
    pub fn request_small(&self, t: TensorId) -> Result<()> {
        let mut pending = self.pending_small.lock().expect("pending read lock");
        if let Some(p) = pending.as_ref() {
            return Err(Error::InvalidArgument(format!(
                "a read of {} is still pending; collect it with poll_small or wait_small first",
                self.names[p.tensor.0 as usize]
            )));
        }
        let buffer = self.persistent_buffer(t)?;
        let shape = &self.shapes[t.0 as usize];
        if shape.bytes() > SMALL_READ_BYTES {
            return Err(Error::InvalidArgument(format!(
                "{} is {} bytes; small reads take at most {SMALL_READ_BYTES}",
                self.names[t.0 as usize],
                shape.bytes()
            )));
        }
        let mut encoder = self.gpu.encoder("take_small");
        encoder.copy_buffer_to_buffer(buffer, 0, &self.small_staging, 0, shape.bytes());
        encoder.clear_buffer(buffer, 0, None);
        self.gpu.submit(encoder);
        let done = self.gpu.map_read_async(&self.small_staging, shape.bytes());
        *pending = Some(PendingRead { tensor: t, done });
        Ok(())
    }

    /// True while a read started by [`Executable::request_small`] is not collected.
    pub fn small_read_pending(&self) -> bool {
        self.pending_small
            .lock()
            .expect("pending read lock")
            .is_some()
    }

    /// The pending small read, if the GPU has finished it (never blocks); `None` while it is
    /// still running or when none is pending.
    pub fn poll_small(&self) -> Result<Option<(TensorId, CpuTensor)>> {
        if !self.small_read_pending() {
            return Ok(None);
        }
        self.gpu.poll()?;
        self.collect_small(false)
    }

    /// The pending small read, waiting for the GPU; `None` when none is pending.
    pub fn wait_small(&self) -> Result<Option<(TensorId, CpuTensor)>> {
        if !self.small_read_pending() {
            return Ok(None);
        }
        self.gpu.wait()?;
        self.in_flight.lock().expect("in-flight lock").clear(); // The wait finished everything.
        self.collect_small(true)
    }

    fn collect_small(&self, must: bool) -> Result<Option<(TensorId, CpuTensor)>> {
        let mut pending = self.pending_small.lock().expect("pending read lock");
        let Some(p) = pending.as_ref() else {
            return Ok(None);
        };
        let outcome = if must {
            self.gpu.wait_mapped(&p.done)
        } else {
            match p.done.try_recv() {
                Ok(outcome) => outcome.map_err(|e| Error::Readback(e.to_string())),
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(None),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(Error::Readback(
                    "the buffer mapping was dropped before it finished".into(),
                )),
            }
        };
        let t = p.tensor;
        *pending = None;
        outcome?;
        let shape = &self.shapes[t.0 as usize];
        let bytes = self.gpu.finish_mapped(&self.small_staging, shape.bytes())?;
        Ok(Some((t, CpuTensor::from_bytes(shape, &bytes))))
    }

    /// Bytes of transient memory each program's plan uses, and what it would use unplanned.
    pub fn memory_report(&self) -> Vec<(String, u64, u64)> {
        self.programs
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.plan.total_bytes(),
                    p.schedule.live.values().map(|r| r.bytes).sum(),
                )
            })
            .collect()
    }

    /// The label of every dispatch of `program`: `program:step:node:op[variant]:entry`.
    pub fn dispatch_labels(&self, program: ProgramId) -> Vec<&str> {
        self.programs[program.0]
            .dispatches
            .iter()
            .map(|d| d.label.as_str())
            .collect()
    }

    /// Number of dispatches a run of `program` records.
    pub fn n_dispatches(&self, program: ProgramId) -> usize {
        self.programs[program.0].dispatches.len()
    }
}
