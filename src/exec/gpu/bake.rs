//! Baking a program: the wgpu objects a run replays, all created here once when the
//! executable is built. A program is baked in named steps: its slot buffers, each node's
//! chosen plan, that plan's scratch and input-to-texture copies, then the dispatches (one
//! uniform buffer for every dispatch's `Params`, a pipeline and a bind group each).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Executable, ProgramSpec, STORAGE};
use crate::gpu::GpuContext;
use crate::graph::memory::{self, MemoryPlan};
use crate::graph::{schedule, Schedule};
use crate::ir::{DeviceCaps, Graph, KernelCall, KernelPlan, Node, Operand, TensorId};
use crate::ir::{ScratchSpec, TextureCopy};
use crate::shape::Shape;
use crate::{Error, Result};

pub(super) struct Program {
    pub(super) name: String,
    pub(super) schedule: Schedule,
    pub(super) plan: MemoryPlan,
    pub(super) slots: Vec<wgpu::Buffer>,
    pub(super) dispatches: Vec<BakedDispatch>,
    /// Input-to-texture copies, recorded before the compute pass.
    pub(super) copies: Vec<BakedCopy>,
    /// Kept alive for the bind groups that point into it.
    _uniforms: wgpu::Buffer,
    /// Scratch resources of the chosen plans, likewise.
    _scratch: Vec<Scratch>,
}

pub(super) struct BakedDispatch {
    pub(super) label: String,
    pub(super) pipeline: Arc<wgpu::ComputePipeline>,
    pub(super) bind_group: wgpu::BindGroup,
    pub(super) workgroups: [u32; 3],
}

/// A scratch resource of a [`KernelPlan`].
pub(super) enum Scratch {
    Texture(wgpu::Texture, wgpu::TextureView),
    Buffer(wgpu::Buffer),
}

impl Scratch {
    pub(super) fn new(gpu: &GpuContext, spec: ScratchSpec) -> Self {
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

    pub(super) fn binding(&self) -> wgpu::BindingResource<'_> {
        match self {
            Scratch::Texture(_, view) => wgpu::BindingResource::TextureView(view),
            Scratch::Buffer(b) => b.as_entire_binding(),
        }
    }
}

/// Where a plan's scratch resource lives while a program is baked.
#[derive(Clone, Copy)]
enum ScratchRef {
    /// Shared by the program's ops: the `idx`th resource of this spec.
    Pooled(ScratchSpec, usize),
    /// The op's own (a copy destination, written before the pass).
    Private(usize),
}

/// The scratch resources of a program's chosen plans, while the program is baked.
#[derive(Default)]
struct ScratchSet {
    /// Shared by the program's nodes (they run one after another, so equal shapes can share).
    pool: HashMap<ScratchSpec, Vec<Scratch>>,
    /// Copy destinations are written once, before the pass: never shared.
    private: Vec<Scratch>,
}

impl ScratchSet {
    /// Where each of `kplan`'s scratch resources lives: its copy destinations are created for
    /// it, the rest come from the pool, which grows where it has too few of a spec.
    fn take(&mut self, gpu: &GpuContext, kplan: &KernelPlan) -> Vec<ScratchRef> {
        let mut used: HashMap<ScratchSpec, usize> = HashMap::new();
        let copied: Vec<usize> = kplan.copies.iter().map(|c| c.scratch).collect();
        kplan
            .scratch
            .iter()
            .enumerate()
            .map(|(i, &spec)| {
                if copied.contains(&i) {
                    self.private.push(Scratch::new(gpu, spec));
                    return ScratchRef::Private(self.private.len() - 1);
                }
                let k = used.entry(spec).or_default();
                let list = self.pool.entry(spec).or_default();
                if list.len() <= *k {
                    list.push(Scratch::new(gpu, spec));
                }
                *k += 1;
                ScratchRef::Pooled(spec, *k - 1)
            })
            .collect()
    }

    fn get(&self, r: ScratchRef) -> &Scratch {
        match r {
            ScratchRef::Pooled(spec, idx) => &self.pool[&spec][idx],
            ScratchRef::Private(idx) => &self.private[idx],
        }
    }

    /// Every resource, for the program to keep alive.
    fn into_vec(self) -> Vec<Scratch> {
        self.pool
            .into_values()
            .flatten()
            .chain(self.private)
            .collect()
    }
}

/// A [`TextureCopy`] bound to its buffer and texture.
pub(super) struct BakedCopy {
    pub(super) label: String,
    src: wgpu::Buffer,
    dst: wgpu::Texture,
    texels: u32,
    rows: u32,
}

impl BakedCopy {
    pub(super) fn new(
        label: String,
        copy: &TextureCopy,
        src: &wgpu::Buffer,
        dst: &Scratch,
    ) -> Self {
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

    pub(super) fn record(&self, encoder: &mut wgpu::CommandEncoder) {
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

/// One dispatch of a node's chosen plan, between choosing the plans and baking the dispatches.
struct Call<'g> {
    /// The node's step in the schedule.
    step: usize,
    node: &'g Node,
    variant: String,
    call: KernelCall,
    operands: Vec<Operand>,
    /// The plan's scratch resources, which `Operand::Scratch` indexes.
    scratch: Vec<ScratchRef>,
}

impl Executable {
    /// Schedules `spec`, plans its transient memory and bakes it.
    pub(super) fn bake(&self, g: &Graph, spec: &ProgramSpec) -> Result<Program> {
        let gpu = &self.gpu;
        let schedule = schedule(g, &spec.outputs, &spec.effects);
        let plan = memory::plan(&schedule);
        let slots: Vec<wgpu::Buffer> = plan
            .slot_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| gpu.create_buffer(&format!("{}:slot{i}", spec.name), bytes, STORAGE))
            .collect();
        let buffer = |t: TensorId| self.buffer_in(&schedule, &plan, &slots, t);

        let caps = gpu.caps();
        // Each node's chosen plan, flattened into calls; scratch comes from a pool shared by
        // the program's nodes (they run one after another, so equal shapes can share).
        let mut scratch = ScratchSet::default();
        let mut calls = Vec::new();
        let mut copies = Vec::new();
        // Storage written by the steps so far: a plan may copy an input only before that.
        let mut written: HashSet<TensorId> = HashSet::new();
        for (step_idx, step) in schedule
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.dispatch)
        {
            let node = g.node(step.node);
            let kplan = self.plan_for(g, node, &caps, &schedule, &written, &buffer)?;
            let refs = scratch.take(gpu, &kplan);
            for copy in &kplan.copies {
                let src = buffer(node.inputs[copy.input]);
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
                    scratch.get(refs[copy.scratch]),
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
                calls.push(Call {
                    step: step_idx,
                    node,
                    variant: kplan.variant.clone(),
                    call: call.clone(),
                    operands: operands.clone(),
                    scratch: refs.clone(),
                });
            }
        }
        let (uniforms, dispatches) = self.bake_dispatches(&spec.name, &calls, &buffer, &scratch)?;
        Ok(Program {
            name: spec.name.clone(),
            schedule,
            plan,
            slots,
            dispatches,
            copies,
            _uniforms: uniforms,
            _scratch: scratch.into_vec(),
        })
    }

    /// The plan `node` runs with, as [`Executable::choose`] picks it among the plans the node
    /// offers here. A plan that copies an input into a texture is a candidate only where that
    /// input still holds what it held when the run began: it is persistent, and its storage is
    /// not in `written` (the storage the earlier steps write). `buffer` gives each tensor's
    /// buffer, for timing.
    fn plan_for<'b>(
        &'b self,
        g: &Graph,
        node: &Node,
        caps: &DeviceCaps,
        schedule: &Schedule,
        written: &HashSet<TensorId>,
        buffer: &dyn Fn(TensorId) -> &'b wgpu::Buffer,
    ) -> Result<KernelPlan> {
        let inputs: Vec<&Shape> = node.inputs.iter().map(|&t| g.shape(t)).collect();
        let outputs: Vec<&Shape> = node.outputs.iter().map(|&t| g.shape(t)).collect();
        let mut plans = node.op.plans(&inputs, &outputs, caps);
        let at_start = |t: TensorId| {
            let root = schedule.storage[t.0 as usize];
            self.persistent.contains_key(&root) && !written.contains(&root)
        };
        plans.retain(|p| p.copies.iter().all(|c| at_start(node.inputs[c.input])));
        let kplan = self.choose(
            &plans,
            &|p, best| self.time_plan(node, p, best, buffer),
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
        Ok(kplan.clone())
    }

    /// Bakes `calls`, the calls of program `program` in order, into dispatches: a pipeline and
    /// a bind group each, and one uniform buffer holding every dispatch's Params, returned
    /// with them (the bind groups point into it). `buffer` gives each tensor's buffer.
    fn bake_dispatches<'b>(
        &'b self,
        program: &str,
        calls: &[Call<'_>],
        buffer: &dyn Fn(TensorId) -> &'b wgpu::Buffer,
        scratch: &ScratchSet,
    ) -> Result<(wgpu::Buffer, Vec<BakedDispatch>)> {
        let gpu = &self.gpu;
        // Each dispatch's Params sit at a multiple of the device's uniform offset alignment.
        let align = u64::from(gpu.limits().min_uniform_buffer_offset_alignment);
        let max_params = calls
            .iter()
            .map(|c| c.call.params.len() as u64)
            .max()
            .unwrap_or(4);
        let stride = max_params.div_ceil(align) * align;
        let uniform_bytes = (calls.len() as u64 * stride).max(stride);
        let uniforms = gpu.create_buffer(
            &format!("{program}:params"),
            uniform_bytes,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let mut uniform_data = vec![0u8; uniform_bytes as usize];

        let mut dispatches = Vec::new();
        for (call_idx, c) in calls.iter().enumerate() {
            let (node, call) = (c.node, &c.call);
            let label = format!(
                "{program}:{}:{}:{}[{}]:{}",
                c.step,
                node.name,
                node.op.name(),
                c.variant,
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
            let bind_group = self.bind_group(
                &label,
                &pipeline,
                call,
                &uniforms,
                offset,
                &c.operands,
                &|operand| match operand {
                    Operand::Input(k) => {
                        self.tensor_binding(buffer(node.inputs[k]), node.inputs[k])
                    }
                    Operand::Output(k) => {
                        self.tensor_binding(buffer(node.outputs[k]), node.outputs[k])
                    }
                    Operand::Scratch(k) => scratch.get(c.scratch[k]).binding(),
                },
            );
            dispatches.push(BakedDispatch {
                label,
                pipeline,
                bind_group,
                workgroups: call.workgroups,
            });
        }
        gpu.write_buffer(&uniforms, 0, &uniform_data);
        Ok((uniforms, dispatches))
    }

    /// The bind group of one dispatch of `call`, for baking and for timing alike: binding 0
    /// is the call's Params, at `offset` in `uniforms`; binding `i + 1` is operand `i`, bound
    /// to what `resource` gives for it.
    pub(super) fn bind_group<'r>(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        call: &KernelCall,
        uniforms: &'r wgpu::Buffer,
        offset: u64,
        operands: &[Operand],
        resource: &dyn Fn(Operand) -> wgpu::BindingResource<'r>,
    ) -> wgpu::BindGroup {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: uniforms,
                offset,
                size: wgpu::BufferSize::new(call.params.len() as u64),
            }),
        }];
        for (i, &operand) in operands.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: resource(operand),
            });
        }
        self.gpu
            .create_bind_group(label, &pipeline.get_bind_group_layout(0), &entries)
    }

    /// `buffer`, holding tensor `t`, bound from its start for `t`'s bytes (at least 4).
    pub(super) fn tensor_binding<'a>(
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
}
