//! Choosing each op's plan, as the executable's [`VariantChoice`] says: the first, a named
//! variant, or the fastest (autotuning: every candidate timed on this adapter, the finalists
//! raced again). Autotuned choices are cached on disk ([`crate::exec::tune`]) under a key of
//! the adapter, the op and a hash of its candidates' code.

use std::collections::HashMap;
use std::sync::Arc;

use super::bake::{BakedCopy, Scratch};
use super::{Executable, ProgramSpec, TuneProgress, TuningReport, VariantChoice, STORAGE};
use crate::exec::tune::TuningCache;
use crate::graph::schedule;
use crate::ir::{DeviceCaps, Graph, KernelPlan, Node, Operand, TensorId};
use crate::shape::Shape;
use crate::{Error, Result};

/// The process-wide tuning cache, loaded on first use.
fn tuning_cache() -> &'static TuningCache {
    static CACHE: std::sync::OnceLock<TuningCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(TuningCache::open_default)
}

/// Autotuning: the candidates that race again after the first pass, and the rounds of the race.
const FINALISTS: usize = 3;
const RACE_ROUNDS: usize = 4;

/// A dispatch baked for timing only.
struct TimingDispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// Kept alive for the bind group, which points into it.
    _uniform: wgpu::Buffer,
}

/// The plans `node` of `g` offers on a device with `caps`.
fn offered_plans(g: &Graph, node: &Node, caps: &DeviceCaps) -> Vec<KernelPlan> {
    let inputs: Vec<&Shape> = node.inputs.iter().map(|&t| g.shape(t)).collect();
    let outputs: Vec<&Shape> = node.outputs.iter().map(|&t| g.shape(t)).collect();
    node.op.plans(&inputs, &outputs, caps)
}

impl Executable {
    /// How many of `spec`'s dispatching nodes offer more than one plan here.
    pub(super) fn ops_with_a_choice(&self, g: &Graph, spec: &ProgramSpec) -> usize {
        let caps = self.gpu.caps();
        schedule(g, &spec.outputs, &spec.effects)
            .steps
            .iter()
            .filter(|s| s.dispatch)
            .filter(|s| offered_plans(g, g.node(s.node), &caps).len() > 1)
            .count()
    }

    /// Under [`VariantChoice::Named`], fails unless some op of `g` offers that variant here.
    pub(super) fn check_named_variant(&self, g: &Graph) -> Result<()> {
        let VariantChoice::Named(name) = &self.choice else {
            return Ok(());
        };
        let caps = self.gpu.caps();
        let offered = g.nodes().iter().any(|node| {
            offered_plans(g, node, &caps)
                .iter()
                .any(|p| &p.variant == name)
        });
        if !offered {
            return Err(Error::InvalidArgument(format!(
                "no op of this graph offers a kernel variant named {name:?} on this adapter"
            )));
        }
        Ok(())
    }

    /// Picks one of an op's plans; `time` measures one (autotuning), `what` names the op and
    /// its shapes.
    pub(super) fn choose<'p>(
        &self,
        plans: &'p [KernelPlan],
        time: &dyn Fn(&KernelPlan, f64) -> Result<f64>,
        what: &str,
    ) -> Result<&'p KernelPlan> {
        Ok(match &self.choice {
            VariantChoice::First => &plans[0],
            VariantChoice::Named(name) => by_name(plans, name).unwrap_or(&plans[0]),
            VariantChoice::Autotune if plans.len() == 1 => &plans[0],
            VariantChoice::Autotune => self.autotune(plans, time, what)?,
        })
    }

    /// The autotuned choice among `plans` (at least two): the cached one where the cache has
    /// it, else the first once the budget is spent, else the fastest, timed now and cached.
    /// Counts the choice in the tuning report.
    fn autotune<'p>(
        &self,
        plans: &'p [KernelPlan],
        time: &dyn Fn(&KernelPlan, f64) -> Result<f64>,
        what: &str,
    ) -> Result<&'p KernelPlan> {
        let key = self.tuning_key(plans, what);
        let cache = tuning_cache();
        let cached = cache.get(&key).and_then(|v| by_name(plans, &v));
        let mut report = self.tuning.lock().expect("tuning report lock");
        self.report_progress(&report, what);
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
                let winner = self.fastest(plans, time)?;
                report.tuned += 1;
                report.seconds += start.elapsed().as_secs_f64();
                cache.put(key, winner.variant.clone());
                winner
            }
        };
        report
            .choices
            .push((what.to_string(), chosen.variant.clone()));
        Ok(chosen)
    }

    /// The tuning cache's key for choosing among `plans` for the op `what`.
    fn tuning_key(&self, plans: &[KernelPlan], what: &str) -> String {
        let info = self.gpu.adapter_info();
        // The candidates and their kernels' code are part of the key: a new variant
        // gets its chance, and a changed kernel is timed again (a choice made for the
        // previous code can be the slowest now).
        format!(
            "{} | {} {} | {what} | {:016x}",
            info.name,
            info.driver,
            info.driver_info,
            candidates_hash(plans)
        )
    }

    /// Tells the progress callback, if any, that the op `what` is next, given `report` so far.
    fn report_progress(&self, report: &TuningReport, what: &str) {
        if let Some(progress) = &self.tune.progress {
            progress(&TuneProgress {
                index: report.tuned + report.cached + report.over_budget + 1,
                total: report.total,
                op: what.to_string(),
            });
        }
    }

    /// The fastest of `plans` by `time`: each timed once, then the fastest few raced again.
    fn fastest<'p>(
        &self,
        plans: &'p [KernelPlan],
        time: &dyn Fn(&KernelPlan, f64) -> Result<f64>,
    ) -> Result<&'p KernelPlan> {
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
        Ok(race
            .iter()
            .zip(&times)
            .min_by(|a, b| a.0.total_cmp(b.0))
            .map_or(&plans[0], |(_, (_, p))| *p))
    }

    /// Seconds one run of `kplan` takes for `node` (best of 3 after a warm-up; just the
    /// warm-up when that is already over twice `to_beat`), on scratch made for the
    /// measurement and stand-ins for the inputs it updates in place; `buffer` gives each
    /// tensor's buffer.
    pub(super) fn time_plan<'b>(
        &'b self,
        node: &Node,
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
        let baked = self.timing_dispatches(node, kplan, buffer, &stand_ins, &scratch)?;
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
                for d in &baked {
                    let [x, y, z] = d.workgroups;
                    pass.set_pipeline(&d.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    pass.dispatch_workgroups(x, y, z);
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

    /// `kplan`'s dispatches for [`Executable::time_plan`], each with a uniform buffer of its
    /// own for its Params; inputs in `stand_ins` (by input index) are bound to their stand-in,
    /// the other tensors to what `buffer` gives.
    fn timing_dispatches<'b>(
        &'b self,
        node: &Node,
        kplan: &KernelPlan,
        buffer: &dyn Fn(TensorId) -> &'b wgpu::Buffer,
        stand_ins: &HashMap<usize, wgpu::Buffer>,
        scratch: &[Scratch],
    ) -> Result<Vec<TimingDispatch>> {
        let gpu = &self.gpu;
        let mut baked = Vec::new();
        for (call, operands) in &kplan.calls {
            let uniform = gpu.create_buffer(
                "tuning params",
                (call.params.len() as u64).max(16),
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            gpu.write_buffer(&uniform, 0, &call.params);
            let pipeline = gpu.pipeline(call)?;
            let bind_group = self.bind_group(
                "tuning",
                &pipeline,
                call,
                &uniform,
                0,
                operands,
                &|operand| match operand {
                    Operand::Input(k) => self.tensor_binding(
                        stand_ins.get(&k).unwrap_or_else(|| buffer(node.inputs[k])),
                        node.inputs[k],
                    ),
                    Operand::Output(k) => {
                        self.tensor_binding(buffer(node.outputs[k]), node.outputs[k])
                    }
                    Operand::Scratch(k) => scratch[k].binding(),
                },
            );
            baked.push(TimingDispatch {
                pipeline,
                bind_group,
                workgroups: call.workgroups,
                _uniform: uniform,
            });
        }
        Ok(baked)
    }
}

/// The plan with variant name `name`, if `plans` has one.
fn by_name<'p>(plans: &'p [KernelPlan], name: &str) -> Option<&'p KernelPlan> {
    plans.iter().find(|p| p.variant == name)
}

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
