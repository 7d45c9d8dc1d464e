//! The executable: bakes schedules into wgpu objects once (pipelines, buffers, bind groups,
//! uniforms) and replays them. `run` records every dispatch of one program into one compute
//! pass and one submission, and creates nothing; the only commands outside the pass are the
//! input-to-texture copies some plans ask for, recorded before it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::exec::tune::TuningCache;
use crate::gpu::{GpuContext, MappingReceiver};
use crate::graph::memory::{self, MemoryPlan};
use crate::graph::schedule::{self, Schedule};
use crate::ir::{CpuTensor, KernelPlan, Operand, ScratchSpec, TextureCopy};
use crate::ir::{Graph, NodeId, TensorId, TensorKind};
use crate::shape::Shape;
use crate::{Error, Result};

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
    programs: Vec<Program>,
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
    pending_small: Mutex<Option<PendingRead>>,
}

/// A read of a small tensor into `small_staging`, mapping in the background.
struct PendingRead {
    tensor: TensorId,
    done: MappingReceiver,
}

/// The process-wide tuning cache, loaded on first use.
fn tuning_cache() -> &'static TuningCache {
    static CACHE: std::sync::OnceLock<TuningCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(TuningCache::open_default)
}

/// Runs allowed in flight before `run` waits for the oldest: enough to keep the GPU fed
/// while the host prepares the next batch, few enough to bound staging memory.
const MAX_IN_FLIGHT: usize = 3;

struct Program {
    name: String,
    schedule: Schedule,
    plan: MemoryPlan,
    slots: Vec<wgpu::Buffer>,
    dispatches: Vec<BakedDispatch>,
    /// Input-to-texture copies, recorded before the compute pass.
    copies: Vec<BakedCopy>,
    /// Kept alive for the bind groups that point into it.
    _uniforms: wgpu::Buffer,
    /// Scratch resources of the chosen plans, likewise.
    _scratch: Vec<Scratch>,
}

/// A scratch resource of a [`KernelPlan`].
enum Scratch {
    Texture(wgpu::Texture, wgpu::TextureView),
    Buffer(wgpu::Buffer),
}

/// Where a plan's scratch resource lives while a program is baked.
#[derive(Clone, Copy)]
enum ScratchRef {
    /// Shared by the program's ops: the `idx`th resource of this spec.
    Pooled(ScratchSpec, usize),
    /// The op's own (a copy destination, written before the pass).
    Private(usize),
}

impl ScratchRef {
    fn get<'a>(
        self,
        pool: &'a HashMap<ScratchSpec, Vec<Scratch>>,
        private: &'a [Scratch],
    ) -> &'a Scratch {
        match self {
            ScratchRef::Pooled(spec, idx) => &pool[&spec][idx],
            ScratchRef::Private(idx) => &private[idx],
        }
    }
}

/// A [`TextureCopy`] bound to its buffer and texture.
struct BakedCopy {
    label: String,
    src: wgpu::Buffer,
    dst: wgpu::Texture,
    texels: u32,
    rows: u32,
}

impl BakedCopy {
    fn new(label: String, copy: &TextureCopy, src: &wgpu::Buffer, dst: &Scratch) -> Self {
        let Scratch::Texture(texture, _) = dst else {
            unreachable!("copies go to scratch textures")
        };
        BakedCopy {
            label,
            src: src.clone(),
            dst: texture.clone(),
            texels: copy.texels,
            rows: copy.rows,
        }
    }

    fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: &self.src,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(self.texels * 16),
                    rows_per_image: None,
                },
            },
            self.dst.as_image_copy(),
            wgpu::Extent3d {
                width: self.texels,
                height: self.rows,
                depth_or_array_layers: 1,
            },
        );
    }
}

impl Scratch {
    fn new(gpu: &GpuContext, spec: ScratchSpec) -> Self {
        match spec {
            ScratchSpec::Texture { width, height } => {
                let texture = gpu.create_texture(
                    &format!("scratch {width}x{height}"),
                    width,
                    height,
                    wgpu::TextureFormat::Rgba32Float,
                    wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
                );
                let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
                Scratch::Texture(texture, view)
            }
            ScratchSpec::Buffer { bytes } => Scratch::Buffer(gpu.create_buffer(
                &format!("scratch {bytes} bytes"),
                bytes.max(4),
                wgpu::BufferUsages::STORAGE,
            )),
        }
    }

    fn binding(&self) -> wgpu::BindingResource<'_> {
        match self {
            Scratch::Texture(_, view) => wgpu::BindingResource::TextureView(view),
            Scratch::Buffer(b) => b.as_entire_binding(),
        }
    }
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

struct BakedDispatch {
    label: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
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
        if let VariantChoice::Named(name) = &exe.choice {
            let caps = gpu.caps();
            let offered = g.nodes().iter().any(|node| {
                let inputs: Vec<&Shape> = node.inputs.iter().map(|&t| g.shape(t)).collect();
                let outputs: Vec<&Shape> = node.outputs.iter().map(|&t| g.shape(t)).collect();
                node.op
                    .plans(&inputs, &outputs, &caps)
                    .iter()
                    .any(|p| &p.variant == name)
            });
            if !offered {
                return Err(Error::InvalidArgument(format!(
                    "no op of this graph offers a kernel variant named {name:?} on this adapter"
                )));
            }
        }
        Ok(exe)
    }

    /// How many of `spec`'s dispatching nodes offer more than one plan here.
    fn ops_with_a_choice(&self, g: &Graph, spec: &ProgramSpec) -> usize {
        let caps = self.gpu.caps();
        schedule::schedule(g, &spec.outputs, &spec.effects)
            .steps
            .iter()
            .filter(|s| s.dispatch)
            .filter(|s| {
                let node = g.node(s.node);
                let inputs: Vec<&Shape> = node.inputs.iter().map(|&t| g.shape(t)).collect();
                let outputs: Vec<&Shape> = node.outputs.iter().map(|&t| g.shape(t)).collect();
                node.op.plans(&inputs, &outputs, &caps).len() > 1
            })
            .count()
    }

    fn bake(&self, g: &Graph, spec: &ProgramSpec) -> Result<Program> {
        let gpu = &self.gpu;
        let schedule = schedule::schedule(g, &spec.outputs, &spec.effects);
        let plan = memory::plan(&schedule);
        let slots: Vec<wgpu::Buffer> = plan
            .slot_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| gpu.create_buffer(&format!("{}:slot{i}", spec.name), bytes, STORAGE))
            .collect();

        let align = u64::from(gpu.limits().min_uniform_buffer_offset_alignment);
        let caps = gpu.caps();
        // Each node's chosen plan, flattened into calls; scratch comes from a pool shared by
        // the program's nodes (they run one after another, so equal shapes can share).
        let mut pool: HashMap<ScratchSpec, Vec<Scratch>> = HashMap::new();
        let mut calls = Vec::new();
        let mut copies = Vec::new();
        // Copy destinations are written once, before the pass: never shared.
        let mut private: Vec<Scratch> = Vec::new();
        // Storage written by the steps so far: a plan may copy an input only before that.
        let mut written: HashSet<TensorId> = HashSet::new();
        for (step_idx, step) in schedule
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.dispatch)
        {
            let node = g.node(step.node);
            let inputs: Vec<&Shape> = node.inputs.iter().map(|&t| g.shape(t)).collect();
            let outputs: Vec<&Shape> = node.outputs.iter().map(|&t| g.shape(t)).collect();
            let mut plans = node.op.plans(&inputs, &outputs, &caps);
            let at_start = |t: TensorId| {
                let root = schedule.storage[t.0 as usize];
                self.persistent.contains_key(&root) && !written.contains(&root)
            };
            plans.retain(|p| p.copies.iter().all(|c| at_start(node.inputs[c.input])));
            let kplan = self.choose(
                &plans,
                &|p, best| {
                    self.time_plan(node, p, best, &|t| {
                        self.buffer_in(&schedule, &plan, &slots, t)
                    })
                },
                &format!(
                    "{} {:?} {}",
                    node.name,
                    node.op,
                    inputs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            )?;
            let mut used: HashMap<ScratchSpec, usize> = HashMap::new();
            let copied: Vec<usize> = kplan.copies.iter().map(|c| c.scratch).collect();
            let scratch: Vec<ScratchRef> = kplan
                .scratch
                .iter()
                .enumerate()
                .map(|(i, &spec)| {
                    if copied.contains(&i) {
                        private.push(Scratch::new(gpu, spec));
                        return ScratchRef::Private(private.len() - 1);
                    }
                    let k = used.entry(spec).or_default();
                    let list = pool.entry(spec).or_default();
                    if list.len() <= *k {
                        list.push(Scratch::new(gpu, spec));
                    }
                    *k += 1;
                    ScratchRef::Pooled(spec, *k - 1)
                })
                .collect();
            for copy in &kplan.copies {
                let src = self.buffer_in(&schedule, &plan, &slots, node.inputs[copy.input]);
                let label = format!(
                    "{}:{step_idx}:{}:{}[{}]:copy{}",
                    spec.name,
                    node.name,
                    node.op.name(),
                    kplan.variant,
                    copy.input
                );
                copies.push(BakedCopy::new(
                    label,
                    copy,
                    src,
                    scratch[copy.scratch].get(&pool, &private),
                ));
            }
            for &t in node
                .outputs
                .iter()
                .chain(node.op.mutates().iter().map(|&k| &node.inputs[k]))
            {
                written.insert(schedule.storage[t.0 as usize]);
            }
            for (call, operands) in &kplan.calls {
                calls.push((
                    step_idx,
                    node,
                    kplan.variant.clone(),
                    call.clone(),
                    operands.clone(),
                    scratch.clone(),
                ));
            }
        }
        // Each dispatch's Params sit at a multiple of the device's uniform offset alignment.
        let max_params = calls
            .iter()
            .map(|c| c.3.params.len() as u64)
            .max()
            .unwrap_or(4);
        let stride = max_params.div_ceil(align) * align;
        let uniform_bytes = (calls.len() as u64 * stride).max(stride);
        let uniforms = gpu.create_buffer(
            &format!("{}:params", spec.name),
            uniform_bytes,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let mut uniform_data = vec![0u8; uniform_bytes as usize];

        let mut dispatches = Vec::new();
        for (call_idx, (step_idx, node, variant, call, operands, scratch)) in
            calls.iter().enumerate()
        {
            let label = format!(
                "{}:{step_idx}:{}:{}[{variant}]:{}",
                spec.name,
                node.name,
                node.op.name(),
                call.entry
            );
            let pipeline = gpu.pipeline(call).map_err(|e| match e {
                Error::Shader { name, message } => Error::Shader {
                    name: format!("{name} ({label})"),
                    message,
                },
                other => other,
            })?;
            let offset = call_idx as u64 * stride;
            uniform_data[offset as usize..offset as usize + call.params.len()]
                .copy_from_slice(&call.params);
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniforms,
                    offset,
                    size: wgpu::BufferSize::new(call.params.len() as u64),
                }),
            }];
            for (i, operand) in operands.iter().enumerate() {
                let tensor = match *operand {
                    Operand::Input(k) => Some(node.inputs[k]),
                    Operand::Output(k) => Some(node.outputs[k]),
                    Operand::Scratch(_) => None,
                };
                let resource = match (tensor, *operand) {
                    (Some(t), _) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: self.buffer_in(&schedule, &plan, &slots, t),
                        offset: 0,
                        size: wgpu::BufferSize::new(self.shapes[t.0 as usize].bytes().max(4)),
                    }),
                    (None, Operand::Scratch(k)) => scratch[k].get(&pool, &private).binding(),
                    (None, _) => unreachable!("inputs and outputs are tensors"),
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource,
                });
            }
            let bind_group =
                gpu.create_bind_group(&label, &pipeline.get_bind_group_layout(0), &entries);
            dispatches.push(BakedDispatch {
                label,
                pipeline,
                bind_group,
                workgroups: call.workgroups,
            });
        }
        gpu.write_buffer(&uniforms, 0, &uniform_data);
        Ok(Program {
            name: spec.name.clone(),
            schedule,
            plan,
            slots,
            dispatches,
            copies,
            _uniforms: uniforms,
            _scratch: pool.into_values().flatten().chain(private).collect(),
        })
    }

    /// Picks one of an op's plans; `time` measures one (autotuning), `what` names the op and
    /// its shapes.
    fn choose<'p>(
        &self,
        plans: &'p [KernelPlan],
        time: &dyn Fn(&KernelPlan, f64) -> Result<f64>,
        what: &str,
    ) -> Result<&'p KernelPlan> {
        let by_name = |name: &str| plans.iter().find(|p| p.variant == name);
        Ok(match &self.choice {
            VariantChoice::First => &plans[0],
            VariantChoice::Named(name) => by_name(name).unwrap_or(&plans[0]),
            VariantChoice::Autotune if plans.len() == 1 => &plans[0],
            VariantChoice::Autotune => {
                let info = self.gpu.adapter_info();
                // The candidates and their kernels' code are part of the key: a new variant
                // gets its chance, and a changed kernel is timed again (a choice made for the
                // previous code can be the slowest now).
                let key = format!(
                    "{} | {} {} | {what} | {:016x}",
                    info.name,
                    info.driver,
                    info.driver_info,
                    candidates_hash(plans)
                );
                let cache = tuning_cache();
                let cached = cache.get(&key).and_then(|v| by_name(&v));
                let mut report = self.tuning.lock().expect("tuning report lock");
                if let Some(progress) = &self.tune.progress {
                    progress(&TuneProgress {
                        index: report.tuned + report.cached + report.over_budget + 1,
                        total: report.total,
                        op: what.to_string(),
                    });
                }
                let spent = std::time::Duration::from_secs_f64(report.seconds);
                let over = self.tune.budget.is_some_and(|b| spent >= b);
                let chosen = match cached {
                    Some(p) => {
                        report.cached += 1;
                        p
                    }
                    None if over => {
                        report.over_budget += 1;
                        &plans[0]
                    }
                    None => {
                        let start = std::time::Instant::now();
                        let mut best = f64::INFINITY;
                        let mut times = Vec::new();
                        for p in plans {
                            let t = time(p, best)?;
                            best = best.min(t);
                            times.push((t, p));
                            // Its pipelines are held by nothing now: keep host memory to
                            // one candidate's worth (the winner is compiled again to bake).
                            self.gpu.release_unused_pipelines();
                        }
                        // A machine's speed drifts over seconds (shared CPUs), so the finalists
                        // race again in turns, each round timing every one of them.
                        times.sort_by(|a, b| a.0.total_cmp(&b.0));
                        times.truncate(FINALISTS);
                        // One run per finalist and round (`to_beat` 0 stops after the first run;
                        // each finalist's pipelines, compiled again for its first round, stay
                        // cached until the race ends).
                        let mut race = vec![f64::INFINITY; times.len()];
                        for _ in 0..RACE_ROUNDS {
                            for (r, (_, p)) in race.iter_mut().zip(&times) {
                                *r = r.min(time(p, 0.0)?);
                            }
                        }
                        self.gpu.release_unused_pipelines();
                        let winner = race
                            .iter()
                            .zip(&times)
                            .min_by(|a, b| a.0.total_cmp(b.0))
                            .map_or(&plans[0], |(_, (_, p))| *p);
                        report.tuned += 1;
                        report.seconds += start.elapsed().as_secs_f64();
                        cache.put(key, winner.variant.clone());
                        winner
                    }
                };
                report
                    .choices
                    .push((what.to_string(), chosen.variant.clone()));
                chosen
            }
        })
    }

    /// Seconds one run of `kplan` takes for `node` (best of 3 after a warm-up; just the
    /// warm-up when that is already over twice `to_beat`), on scratch made for the
    /// measurement and stand-ins for the inputs it updates in place; `buffer` gives each
    /// tensor's buffer.
    fn time_plan<'b>(
        &'b self,
        node: &crate::ir::Node,
        kplan: &KernelPlan,
        to_beat: f64,
        buffer: &dyn Fn(TensorId) -> &'b wgpu::Buffer,
    ) -> Result<f64> {
        let gpu = &self.gpu;
        let scratch: Vec<Scratch> = kplan
            .scratch
            .iter()
            .map(|&s| Scratch::new(gpu, s))
            .collect();
        // Inputs the op updates in place (parameters, optimizer state, metric sums) get zeroed
        // stand-ins: timing must not touch the state training starts from.
        let mutated = node.op.mutates();
        let stand_ins: HashMap<usize, wgpu::Buffer> = mutated
            .iter()
            .map(|&k| {
                let shape = &self.shapes[node.inputs[k].0 as usize];
                (
                    k,
                    gpu.create_buffer("tuning stand-in", shape.bytes(), STORAGE),
                )
            })
            .collect();
        let copies: Vec<BakedCopy> = kplan
            .copies
            .iter()
            .map(|c| {
                let src = buffer(node.inputs[c.input]);
                BakedCopy::new("tuning".into(), c, src, &scratch[c.scratch])
            })
            .collect();
        let mut baked = Vec::new();
        for (call, operands) in &kplan.calls {
            let uniform = gpu.create_buffer(
                "tuning params",
                (call.params.len() as u64).max(16),
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            gpu.write_buffer(&uniform, 0, &call.params);
            let pipeline = gpu.pipeline(call)?;
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniform,
                    offset: 0,
                    size: wgpu::BufferSize::new(call.params.len() as u64),
                }),
            }];
            for (i, operand) in operands.iter().enumerate() {
                let resource = match *operand {
                    Operand::Input(k) => self.tensor_binding(
                        stand_ins.get(&k).unwrap_or_else(|| buffer(node.inputs[k])),
                        node.inputs[k],
                    ),
                    Operand::Output(k) => {
                        self.tensor_binding(buffer(node.outputs[k]), node.outputs[k])
                    }
                    Operand::Scratch(k) => scratch[k].binding(),
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource,
                });
            }
            let bind_group =
                gpu.create_bind_group("tuning", &pipeline.get_bind_group_layout(0), &entries);
            baked.push((pipeline, bind_group, call.workgroups, uniform));
        }
        let run = || -> Result<f64> {
            let start = std::time::Instant::now();
            let mut encoder = gpu.encoder("tuning");
            for copy in &copies {
                copy.record(&mut encoder);
            }
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("tuning"),
                    timestamp_writes: None,
                });
                for (pipeline, bind_group, [x, y, z], _) in &baked {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[]);
                    pass.dispatch_workgroups(*x, *y, *z);
                }
            }
            gpu.submit(encoder);
            gpu.wait()?;
            Ok(start.elapsed().as_secs_f64())
        };
        let measure = || -> Result<f64> {
            let warm_up = run()?;
            if warm_up > 2.0 * to_beat {
                return Ok(warm_up);
            }
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                best = best.min(run()?);
            }
            Ok(best)
        };
        let res = measure();
        // The measurement's objects go in one turn at the device (see `Drop for Executable`).
        let _turn = gpu.turn();
        drop((baked, copies, stand_ins, scratch));
        res
    }

    fn tensor_binding<'a>(
        &self,
        buffer: &'a wgpu::Buffer,
        t: TensorId,
    ) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: 0,
            size: wgpu::BufferSize::new(self.shapes[t.0 as usize].bytes().max(4)),
        })
    }

    /// What autotuning did while this executable was built.
    pub fn tuning_report(&self) -> TuningReport {
        self.tuning.lock().expect("tuning report lock").clone()
    }

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
        let period = match method {
            ProfileMethod::HostSynced | ProfileMethod::HostRepeated(_) => None,
            ProfileMethod::Timestamps => Some(self.gpu.timestamp_period().ok_or_else(|| {
                Error::InvalidArgument(format!("{} has no timestamp queries", self.gpu.describe()))
            })?),
        };
        let Some(period) = period else {
            let repeat = match method {
                ProfileMethod::HostRepeated(r) => r.max(1),
                _ => 1,
            };
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
            return Ok(res);
        };
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
}

impl Executable {
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

    /// The programs, by name, in the order of the specs they were built from.
    pub fn programs(&self) -> Vec<(String, ProgramId)> {
        self.programs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), ProgramId(i)))
            .collect()
    }
}

/// Autotuning: the candidates that race again after the first pass, and the rounds of the race.
const FINALISTS: usize = 3;
const RACE_ROUNDS: usize = 4;

/// 64-bit FNV-1a: a stable fingerprint (std's hashers may change between releases).
/// Hash of the plans' names and every kernel they dispatch (source, entry point, overrides).
fn candidates_hash(plans: &[KernelPlan]) -> u64 {
    let mut text = String::new();
    for plan in plans {
        text.push_str(&plan.variant);
        for (call, _) in &plan.calls {
            text.push_str(call.shader.source);
            text.push_str(call.entry);
            text.push_str(&format!("{:?}", call.overrides));
        }
        text.push(',');
    }
    fnv1a(text.as_bytes())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{KernelCall, Shader};

    static OLD: Shader = Shader::new("k", "fn a() {}", 16);
    static NEW: Shader = Shader::new("k", "fn a() { let x = 1; }", 16);

    fn plan(shader: &'static Shader) -> KernelPlan {
        let call = KernelCall::grid(shader, "main", &[0u32; 4], [1, 1, 1]);
        KernelPlan::direct(call, 1, 1)
    }

    #[test]
    fn tuning_key_changes_with_the_kernel_code() {
        // Same variant names, different code: a cached choice must not carry over.
        assert_ne!(
            candidates_hash(&[plan(&OLD), plan(&OLD)]),
            candidates_hash(&[plan(&OLD), plan(&NEW)])
        );
        assert_eq!(
            candidates_hash(&[plan(&OLD), plan(&NEW)]),
            candidates_hash(&[plan(&OLD), plan(&NEW)])
        );
    }
}
