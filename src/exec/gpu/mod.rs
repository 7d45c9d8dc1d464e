//! The executable: bakes schedules into wgpu objects once (pipelines, buffers, bind groups,
//! uniforms) and replays them. `run` records every dispatch of one program into one compute
//! pass and one submission, and creates nothing; the only commands outside the pass are the
//! input-to-texture copies some plans ask for, recorded before it.
//!
//! This file holds the [`Executable`] itself, its public types, the build entry points and
//! small accessors. The rest is split by concern: `bake` creates a program's wgpu objects,
//! `tune` chooses each op's plan (autotuning among them), `run` replays programs and moves
//! tensors between host and device, `profile` times each dispatch.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::gpu::GpuContext;
use crate::graph::memory::MemoryPlan;
use crate::graph::Schedule;
use crate::ir::{Graph, NodeId, TensorId, TensorKind};
use crate::shape::Shape;
use crate::{Error, Result};

mod bake;
mod profile;
mod run;
mod tune;

pub use profile::ProfileMethod;

/// What one program (e.g. `train` or `eval`) must produce.
#[derive(Clone, Debug)]
pub struct ProgramSpec {
    /// Name, for labels and errors.
    pub name: String,
    /// Tensors readable after the run.
    pub outputs: Vec<TensorId>,
    /// Nodes run for their in-place updates (optimizers, metrics).
    pub effects: Vec<NodeId>,
}

/// Index of a program in its executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramId(pub usize);

/// A graph baked for one device: run its programs, write inputs, read tensors.
pub struct Executable {
    gpu: GpuContext,
    shapes: Vec<Shape>,
    names: Vec<String>,
    persistent: HashMap<TensorId, wgpu::Buffer>,
    programs: Vec<bake::Program>,
    /// How plans are chosen.
    choice: VariantChoice,
    /// Autotuning's budget and progress reports.
    tune: TuneOptions,
    tuning: Mutex<TuningReport>,
    /// Preallocated staging buffer for small reads (metrics), so reading them creates nothing.
    small_staging: wgpu::Buffer,
    /// Runs submitted and maybe not finished, oldest first.
    in_flight: Mutex<VecDeque<wgpu::SubmissionIndex>>,
    /// A small read started by `request_small` and not yet collected.
    pending_small: Mutex<Option<run::PendingRead>>,
}

/// Which of an op's plans the executable bakes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VariantChoice {
    /// The op's first (best-guess) plan.
    #[default]
    First,
    /// The plan with this variant name where an op has one, else the first.
    Named(String),
    /// The fastest plan, timed on this adapter when the executable is built; choices are
    /// cached on disk (see [`crate::exec::tune`]).
    Autotune,
}

/// Where autotuning is, for a progress display: before each op with a choice of plans.
#[derive(Clone, Debug)]
pub struct TuneProgress {
    /// This op's number, from 1.
    pub index: usize,
    /// Ops with a choice in all the executable's programs.
    pub total: usize,
    /// The op (layer, op and shapes).
    pub op: String,
}

/// A callback receiving [`TuneProgress`].
pub type ProgressFn = std::sync::Arc<dyn Fn(&TuneProgress) + Send + Sync>;

/// How autotuning runs ([`Executable::build_tuned`]).
#[derive(Clone, Default)]
pub struct TuneOptions {
    /// Time spent timing candidates after which the remaining ops take their first plan
    /// (not cached, so a later run tunes them).
    pub budget: Option<std::time::Duration>,
    /// Called before each op with a choice is looked up or timed.
    pub progress: Option<ProgressFn>,
}

/// What autotuning did while an executable was built.
#[derive(Clone, Debug, Default)]
pub struct TuningReport {
    /// Ops timed now.
    pub tuned: usize,
    /// Ops whose choice came from the cache.
    pub cached: usize,
    /// Ops left at their first plan because the budget ran out.
    pub over_budget: usize,
    /// Ops with a choice, in all programs.
    pub total: usize,
    /// Seconds spent timing.
    pub seconds: f64,
    /// `(op label, chosen variant)` for every op that had a choice.
    pub choices: Vec<(String, String)>,
}

const SMALL_READ_BYTES: u64 = 256;
const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// Drops every GPU object in one turn at the device (`GpuContext::turn`): on GL each
/// destruction reaches the GL context, and dropping them while another thread holds it for
/// long would make wgpu give up on its lock.
impl Drop for Executable {
    fn drop(&mut self) {
        let _turn = self.gpu.turn();
        self.programs.clear();
        self.persistent.clear();
        // Frees the buffer now; the handle dropped after this reaches nothing.
        self.small_staging.destroy();
    }
}

impl Executable {
    /// Schedules, plans and bakes every program; uploads initial values of parameters, state
    /// and constants. All GPU objects the executable will ever use are created here.
    pub fn build(gpu: &GpuContext, g: &Graph, specs: &[ProgramSpec]) -> Result<Self> {
        Self::build_with(gpu, g, specs, VariantChoice::default())
    }

    /// [`Executable::build`] with an explicit plan choice (tests force every variant).
    pub fn build_with(
        gpu: &GpuContext,
        g: &Graph,
        specs: &[ProgramSpec],
        choice: VariantChoice,
    ) -> Result<Self> {
        Self::build_full(gpu, g, specs, choice, TuneOptions::default())
    }

    /// [`Executable::build`] with every op's plan autotuned, within `options`' budget and
    /// reporting progress to its callback.
    pub fn build_tuned(
        gpu: &GpuContext,
        g: &Graph,
        specs: &[ProgramSpec],
        options: TuneOptions,
    ) -> Result<Self> {
        Self::build_full(gpu, g, specs, VariantChoice::Autotune, options)
    }

    fn build_full(
        gpu: &GpuContext,
        g: &Graph,
        specs: &[ProgramSpec],
        choice: VariantChoice,
        tune: TuneOptions,
    ) -> Result<Self> {
        let mut persistent = HashMap::new();
        for t in g.tensor_ids() {
            let info = g.tensor(t);
            if !info.is_persistent() {
                continue;
            }
            let buffer = gpu.create_buffer(&info.name, info.shape.bytes(), STORAGE);
            if let TensorKind::Param(v) | TensorKind::State(v) | TensorKind::Const(v) = &info.kind {
                gpu.write_buffer(&buffer, 0, v.bytes());
            }
            persistent.insert(t, buffer);
        }
        let mut exe = Executable {
            gpu: gpu.clone(),
            shapes: g.tensor_ids().map(|t| g.shape(t).clone()).collect(),
            names: g.tensor_ids().map(|t| g.tensor(t).name.clone()).collect(),
            persistent,
            programs: Vec::new(),
            choice,
            tune,
            tuning: Mutex::default(),
            small_staging: gpu.create_buffer(
                "small readback",
                SMALL_READ_BYTES,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            in_flight: Mutex::default(),
            pending_small: Mutex::default(),
        };
        if exe.choice == VariantChoice::Autotune {
            exe.tuning.lock().expect("tuning report lock").total = specs
                .iter()
                .map(|spec| exe.ops_with_a_choice(g, spec))
                .sum();
        }
        for spec in specs {
            let program = exe.bake(g, spec)?;
            exe.programs.push(program);
        }
        exe.check_named_variant(g)?;
        Ok(exe)
    }

    /// What autotuning did while this executable was built.
    pub fn tuning_report(&self) -> TuningReport {
        self.tuning.lock().expect("tuning report lock").clone()
    }

    /// The buffer holding `t` in a program with this schedule, memory plan and slots: its
    /// storage root's persistent buffer, else the root's slot.
    fn buffer_in<'a>(
        &'a self,
        schedule: &Schedule,
        plan: &MemoryPlan,
        slots: &'a [wgpu::Buffer],
        t: TensorId,
    ) -> &'a wgpu::Buffer {
        let root = schedule.storage[t.0 as usize];
        match self.persistent.get(&root) {
            Some(b) => b,
            None => &slots[plan.slot_of[&root]],
        }
    }

    /// The program named `name`.
    pub fn program(&self, name: &str) -> Result<ProgramId> {
        self.programs
            .iter()
            .position(|p| p.name == name)
            .map(ProgramId)
            .ok_or_else(|| Error::InvalidArgument(format!("no program named {name:?}")))
    }

    /// The programs, by name, in the order of the specs they were built from.
    pub fn programs(&self) -> Vec<(String, ProgramId)> {
        self.programs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), ProgramId(i)))
            .collect()
    }

    /// The context this executable runs on.
    pub fn gpu(&self) -> &GpuContext {
        &self.gpu
    }

    fn persistent_buffer(&self, t: TensorId) -> Result<&wgpu::Buffer> {
        self.check_tensor(t)?;
        self.persistent.get(&t).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{} is not a persistent tensor (input, parameter or state)",
                self.names[t.0 as usize]
            ))
        })
    }

    /// `t` names a tensor of the graph this executable was built from.
    fn check_tensor(&self, t: TensorId) -> Result<()> {
        if (t.0 as usize) < self.names.len() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "{t:?} is not a tensor of this executable's graph ({} tensors)",
                self.names.len()
            )))
        }
    }

    /// `program` is one of this executable's.
    fn check_program(&self, program: ProgramId) -> Result<()> {
        if program.0 < self.programs.len() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "{program:?} is not a program of this executable ({} programs)",
                self.programs.len()
            )))
        }
    }
}
