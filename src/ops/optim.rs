//! Optimizer updates as in-place kernels: SGD (momentum, dampening, Nesterov, weight decay),
//! Adam, AdamW and RMSprop, with PyTorch's update rules; the learning-rate schedules that scale
//! their rate from the GPU's step count; gradient clipping by global norm. The step count that Adam's bias correction needs lives on the GPU
//! and is bumped by its own tiny kernel, so a step uploads nothing but the batch.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, CpuTensor, DeviceCaps, KernelCall, KernelPlan, OpDef, Shader};
use crate::ir::{Graph, NodeId, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::Shape;
use crate::{Error, Result};

/// `shaders/optim.wgsl`.
pub static SHADER: Shader = Shader::new(
    "optim",
    include_str!("../../shaders/optim.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/optim.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    numel: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    flags: u32,
    dampening: f32,
    _pad: [u32; 3],
}

/// `Params::flags`: Nesterov momentum.
const NESTEROV: u32 = 1;
/// `Params::flags`: weight decay decoupled from the gradient (AdamW).
const DECOUPLED: u32 = 2;

/// `param −= lr · g`, with `g = grad + wd·param` passed through momentum when `momentum > 0`
/// (`v = momentum·v + (1 − dampening)·g`, `v = g` on the first step, then `g = v`, or with
/// Nesterov `g = g + momentum·v`). Inputs `(param, grad, velocity, factors)`, and with
/// dampening `(param, grad, velocity, t, factors)`; updates `param` and `velocity`.
///
/// Every update's last input is the `[2]` f32 step factors: the rate applied is
/// `lr · factors[0]` ([`LrSchedule`] sets it on the GPU) and the gradient is scaled by
/// `factors[1]` ([`ClipGradNorm`] sets it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdUpdate {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 disables it).
    pub momentum: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum (PyTorch's `nesterov=True`; needs `momentum > 0` and no dampening).
    pub nesterov: bool,
    /// Dampening of the momentum (0 as PyTorch's default); with it the update reads the step
    /// count, since PyTorch's first step takes the gradient undamped.
    pub dampening: f32,
}

impl SgdUpdate {
    /// Reads the step count: dampened momentum.
    fn dampened(&self) -> bool {
        self.momentum > 0.0 && self.dampening != 0.0
    }
}

/// Adam (PyTorch's `torch.optim.Adam`). Inputs `(param, grad, m, v, t, factors)`; updates
/// `param`, `m`, `v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamUpdate {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// Weight decay: an L2 penalty added to the gradient (Adam), or with `decoupled` the
    /// parameter shrunk by `lr·weight_decay` before the step (AdamW).
    pub weight_decay: f32,
    /// AdamW (`torch.optim.AdamW`) instead of Adam.
    pub decoupled: bool,
}

/// RMSprop (`torch.optim.RMSprop`, not centred). Inputs `(param, grad, square_avg, buffer,
/// factors)`; updates `param`, `square_avg` and (with momentum) `buffer`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmspropUpdate {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the squared-gradient average (PyTorch's default: 0.99).
    pub alpha: f32,
    /// Denominator guard (1e-8).
    pub eps: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Momentum factor (0 disables it).
    pub momentum: f32,
}

/// `t += 1` on a `[1]` u32 state tensor; runs once per step before the updates that read `t`.
#[derive(Clone, Copy, Debug)]
pub struct OptimizerStepCount;

/// The step-count input: `[1]` u32.
fn check_step_count(op: &'static str, t: &Shape) -> Result<()> {
    if t != &Shape::u32([1]) {
        return Err(Error::shape(
            op,
            format!("step count must be [1] u32, got {t}"),
        ));
    }
    Ok(())
}

/// The step factors input: `[2]` f32 (learning-rate factor, gradient scale).
fn check_factor(op: &'static str, factor: &Shape) -> Result<()> {
    if factor != &Shape::f32([2]) {
        return Err(Error::shape(
            op,
            format!("the step factors must be [2] f32, got {factor}"),
        ));
    }
    Ok(())
}

fn check_same(op: &'static str, inputs: &[&Shape], what: &[&str]) -> Result<()> {
    for (s, name) in inputs.iter().zip(what).skip(1) {
        if s != &inputs[0] {
            return Err(Error::shape(
                op,
                format!("{name} {s} must match param {}", inputs[0]),
            ));
        }
    }
    Ok(())
}

impl OpDef for SgdUpdate {
    fn name(&self) -> &'static str {
        "sgd_update"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let dampened = self.dampened();
        expect_arity(self.name(), inputs, 4 + usize::from(dampened))?;
        check_same(self.name(), &inputs[..3], &["param", "grad", "velocity"])?;
        check_factor(self.name(), inputs[inputs.len() - 1])?;
        if dampened {
            check_step_count(self.name(), inputs[3])?;
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::shape(
                self.name(),
                "Nesterov momentum needs momentum > 0 and no dampening",
            ));
        }
        Ok(vec![])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        let p = Params {
            numel: numel as u32,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            flags: if self.nesterov { NESTEROV } else { 0 },
            dampening: self.dampening,
            ..Default::default()
        };
        let entry = if self.dampened() {
            "sgd_update_dampened"
        } else {
            "sgd_update"
        };
        KernelCall::per_element(&SHADER, entry, &p, numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let factors = inputs[inputs.len() - 1].f32();
        let (grad, lr, scale) = (inputs[1].f32(), self.lr * factors[0], factors[1]);
        let first = self.dampened() && inputs[3].u32()[0] == 1;
        let [param, velocity] = outputs else {
            unreachable!("mutates() lists two inputs")
        };
        let (param, velocity) = (param.f32_mut(), velocity.f32_mut());
        for i in 0..param.len() {
            let mut g = grad[i] * scale + self.weight_decay * param[i];
            if self.momentum > 0.0 {
                velocity[i] = if first {
                    g
                } else {
                    self.momentum * velocity[i] + (1.0 - self.dampening) * g
                };
                g = if self.nesterov {
                    g + self.momentum * velocity[i]
                } else {
                    velocity[i]
                };
            }
            param[i] -= lr * g;
        }
    }

    fn mutates(&self) -> &'static [usize] {
        &[0, 2]
    }
}

impl OpDef for AdamUpdate {
    fn name(&self) -> &'static str {
        "adam_update"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 6)?;
        check_same(self.name(), &inputs[..4], &["param", "grad", "m", "v"])?;
        check_factor(self.name(), inputs[5])?;
        check_step_count(self.name(), inputs[4])?;
        Ok(vec![])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        let p = Params {
            numel: numel as u32,
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            flags: if self.decoupled { DECOUPLED } else { 0 },
            ..Default::default()
        };
        KernelCall::per_element(&SHADER, "adam_update", &p, numel.div_ceil(4))
    }

    // Where the length allows, the same update over vec4 views of the tensors.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], _caps: &DeviceCaps) -> Vec<KernelPlan> {
        let direct = KernelPlan::direct(self.kernel(inputs, outputs), 6, 0);
        let numel = inputs[0].numel();
        if !numel.is_multiple_of(4) {
            return vec![direct];
        }
        let mut call = self.kernel(inputs, outputs);
        call.entry = "adam_update_vec4";
        let vec4 = KernelPlan {
            variant: "vec4".into(),
            ..KernelPlan::direct(call, 6, 0)
        };
        vec![vec4, direct]
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (grad, t) = (inputs[1].f32(), inputs[4].u32()[0] as i32);
        let scale = f64::from(inputs[5].f32()[1]);
        let [param, m, v] = outputs else {
            unreachable!("mutates() lists three inputs")
        };
        let (param, m, v) = (param.f32_mut(), m.f32_mut(), v.f32_mut());
        let (b1, b2) = (f64::from(self.beta1), f64::from(self.beta2));
        let lr = f64::from(self.lr) * f64::from(inputs[5].f32()[0]);
        let wd = f64::from(self.weight_decay);
        for i in 0..param.len() {
            let (w, g) = if self.decoupled {
                (
                    f64::from(param[i]) * (1.0 - lr * wd),
                    f64::from(grad[i]) * scale,
                )
            } else {
                let w = f64::from(param[i]);
                (w, f64::from(grad[i]) * scale + wd * w)
            };
            let mi = b1 * f64::from(m[i]) + (1.0 - b1) * g;
            let vi = b2 * f64::from(v[i]) + (1.0 - b2) * g * g;
            m[i] = mi as f32;
            v[i] = vi as f32;
            let m_hat = mi / (1.0 - b1.powi(t));
            let v_hat = vi / (1.0 - b2.powi(t));
            param[i] = (w - lr * m_hat / (v_hat.sqrt() + f64::from(self.eps))) as f32;
        }
    }

    fn mutates(&self) -> &'static [usize] {
        &[0, 2, 3]
    }
}

impl OpDef for RmspropUpdate {
    fn name(&self) -> &'static str {
        "rmsprop_update"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 5)?;
        check_same(
            self.name(),
            &inputs[..4],
            &["param", "grad", "square_avg", "buffer"],
        )?;
        check_factor(self.name(), inputs[4])?;
        Ok(vec![])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        let p = Params {
            numel: numel as u32,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            beta2: self.alpha,
            eps: self.eps,
            ..Default::default()
        };
        KernelCall::per_element(&SHADER, "rmsprop_update", &p, numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let grad = inputs[1].f32();
        let [param, square_avg, buffer] = outputs else {
            unreachable!("mutates() lists three inputs")
        };
        let (param, square_avg, buffer) = (param.f32_mut(), square_avg.f32_mut(), buffer.f32_mut());
        let alpha = f64::from(self.alpha);
        let lr = f64::from(self.lr) * f64::from(inputs[4].f32()[0]);
        let scale = f64::from(inputs[4].f32()[1]);
        for i in 0..param.len() {
            let g = f64::from(grad[i]) * scale + f64::from(self.weight_decay) * f64::from(param[i]);
            let s = alpha * f64::from(square_avg[i]) + (1.0 - alpha) * g * g;
            square_avg[i] = s as f32;
            let mut d = g / (s.sqrt() + f64::from(self.eps));
            if self.momentum > 0.0 {
                d += f64::from(self.momentum) * f64::from(buffer[i]);
                buffer[i] = d as f32;
            }
            param[i] = (f64::from(param[i]) - lr * d) as f32;
        }
    }

    fn mutates(&self) -> &'static [usize] {
        &[0, 2, 3]
    }
}

impl OpDef for OptimizerStepCount {
    fn name(&self) -> &'static str {
        "optimizer_step_count"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        check_step_count(self.name(), inputs[0])?;
        Ok(vec![])
    }

    fn kernel(&self, _inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::grid(
            &SHADER,
            "optimizer_step_count",
            &Params {
                numel: 1,
                ..Default::default()
            },
            [1, 1, 1],
        )
    }

    fn reference(&self, _inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        outputs[0].u32_mut()[0] += 1;
    }

    fn mutates(&self) -> &'static [usize] {
        &[0]
    }
}

impl Graph {
    /// Appends an SGD step on `param` (see [`SgdUpdate`]) from `grad`, its momentum buffer
    /// `velocity`, the step count `t` (`[1]` u32, read only with dampened momentum, for
    /// PyTorch's undamped first step) and the step `factors` (`[2]` f32); returns the node, an
    /// effect that updates `param` and `velocity` in place.
    pub fn sgd_update(
        &mut self,
        param: TensorId,
        grad: TensorId,
        velocity: TensorId,
        t: TensorId,
        factors: TensorId,
        update: SgdUpdate,
    ) -> Result<NodeId> {
        if update.dampened() {
            self.push_node(update, &[param, grad, velocity, t, factors])
        } else {
            self.push_node(update, &[param, grad, velocity, factors])
        }
    }

    /// Appends an Adam (or AdamW) step on `param` (see [`AdamUpdate`]) from `grad`, the
    /// moments `m` and `v`, the step count `t` (`[1]` u32) and the step `factors` (`[2]` f32);
    /// returns the node, an effect that updates `param`, `m` and `v` in place.
    pub fn adam_update(
        &mut self,
        param: TensorId,
        grad: TensorId,
        m: TensorId,
        v: TensorId,
        t: TensorId,
        factors: TensorId,
        update: AdamUpdate,
    ) -> Result<NodeId> {
        self.push_node(update, &[param, grad, m, v, t, factors])
    }

    /// Appends an RMSprop step on `param` (see [`RmspropUpdate`]) from `grad`, the
    /// squared-gradient average `square_avg`, the momentum `buffer` and the step `factors`
    /// (`[2]` f32); returns the node, an effect that updates `param`, `square_avg` and
    /// `buffer` in place.
    pub fn rmsprop_update(
        &mut self,
        param: TensorId,
        grad: TensorId,
        square_avg: TensorId,
        buffer: TensorId,
        factors: TensorId,
        update: RmspropUpdate,
    ) -> Result<NodeId> {
        self.push_node(update, &[param, grad, square_avg, buffer, factors])
    }

    /// Appends `t += 1` on the `[1]` u32 state tensor `t` (see [`OptimizerStepCount`]);
    /// returns the node, an effect.
    pub fn optimizer_step_count(&mut self, t: TensorId) -> Result<NodeId> {
        self.push_node(OptimizerStepCount, &[t])
    }
}

/// `shaders/lr_schedule.wgsl`.
pub static SCHEDULE_SHADER: Shader = Shader::new(
    "lr_schedule",
    include_str!("../../shaders/lr_schedule.wgsl"),
    size_of::<ScheduleParams>(),
);

/// Mirrors `struct Params` in `shaders/lr_schedule.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct ScheduleParams {
    kind: u32,
    count: u32,
    base: f32,
    a: f32,
    b: f32,
    c: f32,
    d: f32,
    _pad: u32,
    milestones: [u32; 4],
}

/// A learning-rate schedule, stepped once per optimizer step (as PyTorch's schedulers are when
/// `scheduler.step()` follows every `optimizer.step()`); it gives the factor of the optimizer's
/// rate for step `s` (from 0).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum LrSchedule {
    /// Factor 1 (no schedule).
    #[default]
    Constant,
    /// `gamma^⌊s / step_size⌋` (`StepLR`).
    Step {
        /// Steps between decays.
        step_size: usize,
        /// Decay factor.
        gamma: f32,
    },
    /// `gamma^(milestones passed)` (`MultiStepLR`), up to four milestones in increasing order.
    MultiStep {
        /// The steps at which the rate decays; unused entries are `usize::MAX`.
        milestones: [usize; 4],
        /// Decay factor.
        gamma: f32,
    },
    /// Linear warm-up from `1/warmup` to 1 over `warmup` steps, then cosine annealing to
    /// `min_factor` at step `total` (`LinearLR` then `CosineAnnealingLR`, as used for ResNets).
    CosineWarmup {
        /// Warm-up steps.
        warmup: usize,
        /// Steps in the whole run.
        total: usize,
        /// The factor the cosine ends at.
        min_factor: f32,
    },
    /// `OneCycleLR` with cosine annealing: from `1/div_factor` up to 1 over `pct_start` of
    /// `total` steps, then down to `1/(div_factor·final_div_factor)`.
    OneCycle {
        /// Steps in the whole run.
        total: usize,
        /// Share of the steps spent rising (PyTorch's default: 0.3).
        pct_start: f32,
        /// Initial rate divisor (25).
        div_factor: f32,
        /// Final rate divisor, beyond the initial one (1e4).
        final_div_factor: f32,
    },
}

impl LrSchedule {
    /// `MultiStep` from up to four milestones.
    pub fn multi_step(milestones: &[usize], gamma: f32) -> Result<Self> {
        if milestones.len() > 4 || milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidArgument(format!(
                "multi-step milestones must be at most four, increasing: {milestones:?}"
            )));
        }
        let mut m = [usize::MAX; 4];
        m[..milestones.len()].copy_from_slice(milestones);
        Ok(LrSchedule::MultiStep {
            milestones: m,
            gamma,
        })
    }

    /// The factor for step `s` (from 0), in f64: the specification the kernel follows.
    pub fn factor(&self, s: usize) -> f64 {
        let s = s as f64;
        let anneal = |start: f64, end: f64, frac: f64| {
            end + (start - end) * (1.0 + (std::f64::consts::PI * frac.clamp(0.0, 1.0)).cos()) / 2.0
        };
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Step { step_size, gamma } => {
                f64::from(gamma).powf((s / step_size as f64).floor())
            }
            LrSchedule::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| s >= m as f64).count();
                f64::from(gamma).powi(passed as i32)
            }
            LrSchedule::CosineWarmup {
                warmup,
                total,
                min_factor,
            } => {
                let w = warmup as f64;
                if s < w {
                    (s + 1.0) / w
                } else {
                    anneal(
                        1.0,
                        f64::from(min_factor),
                        (s - w) / (total as f64 - w).max(1.0),
                    )
                }
            }
            LrSchedule::OneCycle {
                total,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let initial = 1.0 / f64::from(div_factor);
                let up_end = f64::from(pct_start) * total as f64 - 1.0;
                if s <= up_end {
                    anneal(initial, 1.0, s / up_end.max(1.0))
                } else {
                    let end = initial / f64::from(final_div_factor);
                    anneal(
                        1.0,
                        end,
                        (s - up_end) / (total as f64 - 1.0 - up_end).max(1.0),
                    )
                }
            }
        }
    }

    fn params(&self) -> ScheduleParams {
        let mut p = ScheduleParams {
            base: 1.0,
            ..Default::default()
        };
        match *self {
            LrSchedule::Constant => {}
            LrSchedule::Step { step_size, gamma } => {
                (p.kind, p.a, p.b) = (1, step_size as f32, gamma);
            }
            LrSchedule::MultiStep { milestones, gamma } => {
                p.kind = 2;
                p.b = gamma;
                p.count = milestones.iter().filter(|&&m| m != usize::MAX).count() as u32;
                p.milestones = milestones.map(|m| m.min(u32::MAX as usize) as u32);
            }
            LrSchedule::CosineWarmup {
                warmup,
                total,
                min_factor,
            } => {
                (p.kind, p.a, p.c, p.d) = (3, warmup as f32, total as f32, min_factor);
            }
            LrSchedule::OneCycle {
                total,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                p.kind = 4;
                p.a = pct_start * total as f32 - 1.0;
                p.b = div_factor;
                p.c = total as f32;
                p.d = final_div_factor;
            }
        }
        p
    }

    fn check(&self, op: &'static str) -> Result<()> {
        let bad = match *self {
            LrSchedule::Constant => false,
            LrSchedule::Step { step_size, gamma } => step_size == 0 || !gamma.is_finite(),
            LrSchedule::MultiStep { gamma, .. } => !gamma.is_finite(),
            LrSchedule::CosineWarmup {
                warmup,
                total,
                min_factor,
            } => warmup == 0 || total <= warmup || !min_factor.is_finite(),
            LrSchedule::OneCycle {
                total,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                total < 2
                    || !(0.0..1.0).contains(&pct_start)
                    || div_factor <= 0.0
                    || final_div_factor <= 0.0
            }
        };
        if bad {
            Err(Error::shape(op, format!("invalid schedule {self:?}")))
        } else {
            Ok(())
        }
    }
}

/// Sets the learning-rate factor (`factors[0]` of the `[2]` f32 step factors) from the `[1]`
/// u32 step count (just incremented): inputs `(t, factors)`, updates `factors`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrScheduleStep(pub LrSchedule);

impl OpDef for LrScheduleStep {
    fn name(&self) -> &'static str {
        "lr_schedule"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        self.0.check(self.name())?;
        check_step_count(self.name(), inputs[0])?;
        check_factor(self.name(), inputs[1])?;
        Ok(vec![])
    }

    fn kernel(&self, _inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::grid(&SCHEDULE_SHADER, "lr_schedule", &self.0.params(), [1, 1, 1])
            .with_overrides(&[])
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let t = inputs[0].u32()[0] as usize;
        outputs[0].f32_mut()[0] = self.0.factor(t.saturating_sub(1)) as f32;
    }

    fn mutates(&self) -> &'static [usize] {
        &[1]
    }
}

impl Graph {
    /// Appends the node that sets `factors[0]` (`[2]` f32 state) to `schedule`'s rate factor
    /// for the step count `t` (`[1]` u32, just incremented; see [`LrScheduleStep`]); returns
    /// the node, an effect.
    pub fn lr_schedule(
        &mut self,
        t: TensorId,
        factors: TensorId,
        schedule: LrSchedule,
    ) -> Result<NodeId> {
        self.push_node(LrScheduleStep(schedule), &[t, factors])
    }
}

/// `shaders/clip_grad.wgsl`.
pub static CLIP_SHADER: Shader = Shader::new(
    "clip_grad",
    include_str!("../../shaders/clip_grad.wgsl"),
    size_of::<ClipParams>(),
);

/// Mirrors `struct Params` in `shaders/clip_grad.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct ClipParams {
    numel: u32,
    first: u32,
    max_norm: f32,
    _pad: u32,
}

/// Adds `Σ grad²` into a `[1]` f32 accumulator (replacing it when `first`): inputs
/// `(grad, acc)`, updates `acc`. One per gradient, the first with `first`, then
/// [`ClipGradNorm`].
#[derive(Clone, Copy, Debug)]
pub struct GradSquaredNorm {
    /// The first gradient of the step: the accumulator starts from 0.
    pub first: bool,
}

/// `factors[1] = min(1, max_norm / (‖g‖ + 1e-6))` from the accumulated `‖g‖²` of every
/// gradient (`torch.nn.utils.clip_grad_norm_`): inputs `(acc, factors)`, updates `factors`;
/// the updates that follow scale each gradient by it.
#[derive(Clone, Copy, Debug)]
pub struct ClipGradNorm {
    /// The largest global norm let through.
    pub max_norm: f32,
}

impl OpDef for GradSquaredNorm {
    fn name(&self) -> &'static str {
        "grad_sq_norm"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        if inputs[0].dtype != crate::shape::DType::F32 || inputs[1] != &Shape::f32([1]) {
            return Err(Error::shape(
                self.name(),
                format!(
                    "takes an f32 gradient and a [1] f32 accumulator, got {} and {}",
                    inputs[0], inputs[1]
                ),
            ));
        }
        Ok(vec![])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let p = ClipParams {
            numel: inputs[0].numel() as u32,
            first: u32::from(self.first),
            ..Default::default()
        };
        KernelCall::grid(&CLIP_SHADER, "grad_sq_norm", &p, [1, 1, 1])
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let sum: f64 = inputs[0].f32().iter().map(|&g| f64::from(g).powi(2)).sum();
        let acc = &mut outputs[0].f32_mut()[0];
        *acc = if self.first {
            sum
        } else {
            f64::from(*acc) + sum
        } as f32;
    }

    fn mutates(&self) -> &'static [usize] {
        &[1]
    }
}

impl OpDef for ClipGradNorm {
    fn name(&self) -> &'static str {
        "clip_grad_norm"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        if inputs[0] != &Shape::f32([1]) {
            return Err(Error::shape(
                self.name(),
                format!("the accumulated norm must be [1] f32, got {}", inputs[0]),
            ));
        }
        check_factor(self.name(), inputs[1])?;
        if !(self.max_norm.is_finite() && self.max_norm > 0.0) {
            return Err(Error::shape(
                self.name(),
                format!("max_norm must be positive, got {}", self.max_norm),
            ));
        }
        Ok(vec![])
    }

    fn kernel(&self, _inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let p = ClipParams {
            max_norm: self.max_norm,
            ..Default::default()
        };
        KernelCall::grid(&CLIP_SHADER, "clip_grad_norm", &p, [1, 1, 1])
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let norm = f64::from(inputs[0].f32()[0]).sqrt();
        let coef = (f64::from(self.max_norm) / (norm + 1e-6)).min(1.0);
        outputs[0].f32_mut()[1] = coef as f32;
    }

    fn mutates(&self) -> &'static [usize] {
        &[1]
    }
}

impl Graph {
    /// Appends the node adding `Σ grad²` into the `[1]` f32 accumulator `acc`, replacing what
    /// it held when `first` (see [`GradSquaredNorm`]); returns the node, an effect.
    pub fn grad_sq_norm(&mut self, grad: TensorId, acc: TensorId, first: bool) -> Result<NodeId> {
        self.push_node(GradSquaredNorm { first }, &[grad, acc])
    }

    /// Appends the node that sets the gradient scale `factors[1]` (`[2]` f32 state) so the
    /// global norm `√acc` is at most `max_norm` (see [`ClipGradNorm`]); returns the node, an
    /// effect.
    pub fn clip_grad_norm(
        &mut self,
        acc: TensorId,
        factors: TensorId,
        max_norm: f32,
    ) -> Result<NodeId> {
        self.push_node(ClipGradNorm { max_norm }, &[acc, factors])
    }
}

/// Clipping: sums of squares over awkward lengths (one under a workgroup, several over) and
/// the coefficient both clipping and not.
fn clip_catalog() -> Vec<CatalogEntry> {
    let mut res = vec![
        CatalogEntry::new(
            GradSquaredNorm { first: true },
            vec![Shape::f32([37]), Shape::f32([1])],
        ),
        CatalogEntry::new(
            GradSquaredNorm { first: false },
            vec![Shape::f32([3, 1001]), Shape::f32([1])],
        ),
    ];
    for (max_norm, sq) in [(1.0, 30.0), (10.0, 4.0)] {
        let mut entry = CatalogEntry::new(
            ClipGradNorm { max_norm },
            vec![Shape::f32([1]), Shape::f32([2])],
        );
        entry.prepare = Some(Box::new(move |inputs: &mut [CpuTensor]| {
            inputs[0].f32_mut()[0] = sq;
        }));
        res.push(entry);
    }
    res
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let p = Shape::f32([5, 7, 3]);
    let mut count = CatalogEntry::new(OptimizerStepCount, vec![Shape::u32([1])]);
    count.u32_bound = 100;
    vec![
        CatalogEntry::new(
            SgdUpdate {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.01,
                nesterov: false,
                dampening: 0.0,
            },
            vec![p.clone(), p.clone(), p.clone(), Shape::f32([2])],
        ),
        CatalogEntry::new(
            SgdUpdate {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.01,
                nesterov: true,
                dampening: 0.0,
            },
            vec![p.clone(), p.clone(), p.clone(), Shape::f32([2])],
        ),
        CatalogEntry::new(
            SgdUpdate {
                lr: 0.1,
                momentum: 0.0,
                weight_decay: 0.0,
                nesterov: false,
                dampening: 0.0,
            },
            vec![
                Shape::f32([1031]),
                Shape::f32([1031]),
                Shape::f32([1031]),
                Shape::f32([2]),
            ],
        ),
        // Dampened, at the first step (undamped) and later ones.
        dampened_entry(&p, 1),
        dampened_entry(&p, 5),
        adam_entry(p.clone(), false),
        adam_entry(p.clone(), true),
        rmsprop_entry(p.clone(), 0.0),
        rmsprop_entry(p, 0.9),
        count,
    ]
    .into_iter()
    .chain(schedule_catalog())
    .chain(clip_catalog())
    .collect()
}

/// Every kind of schedule, at random steps (t from 1).
fn schedule_catalog() -> Vec<CatalogEntry> {
    let schedules = [
        LrSchedule::Constant,
        LrSchedule::Step {
            step_size: 7,
            gamma: 0.5,
        },
        LrSchedule::multi_step(&[5, 20, 40], 0.1).expect("valid"),
        LrSchedule::CosineWarmup {
            warmup: 10,
            total: 60,
            min_factor: 0.01,
        },
        LrSchedule::OneCycle {
            total: 50,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        },
    ];
    schedules
        .into_iter()
        .map(|schedule| {
            let mut entry = CatalogEntry::new(
                LrScheduleStep(schedule),
                vec![Shape::u32([1]), Shape::f32([2])],
            );
            entry.u32_bound = 70;
            entry.prepare = Some(Box::new(|inputs: &mut [CpuTensor]| {
                inputs[0].u32_mut()[0] += 1;
            }));
            entry
        })
        .collect()
}

/// SGD with dampened momentum at step `t`.
fn dampened_entry(p: &Shape, t: u32) -> CatalogEntry {
    let mut entry = CatalogEntry::new(
        SgdUpdate {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: false,
            dampening: 0.3,
        },
        vec![
            p.clone(),
            p.clone(),
            p.clone(),
            Shape::u32([1]),
            Shape::f32([2]),
        ],
    );
    entry.prepare = Some(Box::new(move |inputs: &mut [CpuTensor]| {
        inputs[3].u32_mut()[0] = t;
    }));
    entry
}

/// Adam and AdamW on a length that is a multiple of 4 (the vec4 plan).
pub(crate) fn vec4_catalog() -> Vec<CatalogEntry> {
    vec![
        adam_entry(Shape::f32([6, 10]), false),
        adam_entry(Shape::f32([6, 10]), true),
    ]
}

/// An RMSprop update of a parameter of shape `p` (its square average kept non-negative).
fn rmsprop_entry(p: Shape, momentum: f32) -> CatalogEntry {
    let mut entry = CatalogEntry::new(
        RmspropUpdate {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
            momentum,
        },
        vec![p.clone(), p.clone(), p.clone(), p, Shape::f32([2])],
    );
    entry.prepare = Some(Box::new(|inputs: &mut [CpuTensor]| {
        inputs[2].f32_mut().iter_mut().for_each(|v| *v = v.abs());
    }));
    entry
}

/// An Adam (or AdamW) update of a parameter of shape `p`.
fn adam_entry(p: Shape, decoupled: bool) -> CatalogEntry {
    let mut adam = CatalogEntry::new(
        AdamUpdate {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled,
        },
        vec![
            p.clone(),
            p.clone(),
            p.clone(),
            p,
            Shape::u32([1]),
            Shape::f32([2]),
        ],
    );
    adam.u32_bound = 5;
    // Adam's v is a running mean of squares: never negative.
    adam.prepare = Some(Box::new(|inputs: &mut [CpuTensor]| {
        inputs[3].f32_mut().iter_mut().for_each(|v| *v = v.abs());
        inputs[4].u32_mut()[0] += 1;
    }));
    adam
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    #[test]
    fn schedules_follow_pytorch() {
        let step = LrSchedule::Step {
            step_size: 3,
            gamma: 0.5,
        };
        assert_eq!([0, 2, 3, 7].map(|s| step.factor(s)), [1.0, 1.0, 0.5, 0.25]);
        let multi = LrSchedule::multi_step(&[2, 5], 0.1).expect("valid");
        let got = [1, 2, 4, 5].map(|s| multi.factor(s));
        for (g, w) in got.iter().zip([1.0, 0.1, 0.1, 0.01]) {
            assert!((g - w).abs() < 1e-7, "{got:?}");
        }
        assert!(LrSchedule::multi_step(&[5, 2], 0.1).is_err());
        let cosine = LrSchedule::CosineWarmup {
            warmup: 4,
            total: 14,
            min_factor: 0.1,
        };
        assert_eq!(cosine.factor(0), 0.25);
        assert_eq!(cosine.factor(4), 1.0);
        assert!((cosine.factor(9) - 0.55).abs() < 1e-7);
        assert!((cosine.factor(14) - 0.1).abs() < 1e-7);
        // OneCycleLR(max_lr=1, total_steps=100): starts at 1/25, peaks at step 29, ends at
        // 1/(25·1e4) at step 99.
        let one_cycle = LrSchedule::OneCycle {
            total: 100,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        };
        assert!((one_cycle.factor(0) - 0.04).abs() < 1e-12);
        assert!((one_cycle.factor(29) - 1.0).abs() < 1e-12);
        assert!((one_cycle.factor(99) - 0.04 / 1e4).abs() < 1e-12);
    }
}
