//! Optimizer updates as in-place kernels: SGD (momentum, Nesterov, weight decay), Adam, AdamW
//! and RMSprop, with PyTorch's update rules. The step count that Adam's bias correction needs lives on the GPU
//! and is bumped by its own tiny kernel, so a step uploads nothing but the batch.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, CpuTensor, DeviceCaps, KernelCall, KernelPlan, OpDef, Shader};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
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
}

/// `Params::flags`: Nesterov momentum.
const NESTEROV: u32 = 1;
/// `Params::flags`: weight decay decoupled from the gradient (AdamW).
const DECOUPLED: u32 = 2;

/// `param −= lr · g`, with `g = grad + wd·param` passed through momentum when `momentum > 0`
/// (`v = momentum·v + g`, then `g = v`, or with Nesterov `g = g + momentum·v`). Inputs
/// `(param, grad, velocity)`; updates `param` and `velocity`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdUpdate {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 disables it).
    pub momentum: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum (PyTorch's `nesterov=True`; needs `momentum > 0`).
    pub nesterov: bool,
}

/// Adam (PyTorch's `torch.optim.Adam`). Inputs `(param, grad, m, v, t)`; updates `param`, `m`, `v`.
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

/// RMSprop (`torch.optim.RMSprop`, not centred). Inputs `(param, grad, square_avg, buffer)`;
/// updates `param`, `square_avg` and (with momentum) `buffer`.
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
        expect_arity(self.name(), inputs, 3)?;
        check_same(self.name(), inputs, &["param", "grad", "velocity"])?;
        if self.nesterov && self.momentum <= 0.0 {
            return Err(Error::shape(
                self.name(),
                "Nesterov momentum needs momentum > 0",
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
            ..Default::default()
        };
        KernelCall::per_element(&SHADER, "sgd_update", &p, numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let grad = inputs[1].f32();
        let [param, velocity] = outputs else {
            unreachable!("mutates() lists two inputs")
        };
        let (param, velocity) = (param.f32_mut(), velocity.f32_mut());
        for i in 0..param.len() {
            let mut g = grad[i] + self.weight_decay * param[i];
            if self.momentum > 0.0 {
                velocity[i] = self.momentum * velocity[i] + g;
                g = if self.nesterov {
                    g + self.momentum * velocity[i]
                } else {
                    velocity[i]
                };
            }
            param[i] -= self.lr * g;
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
        expect_arity(self.name(), inputs, 5)?;
        check_same(self.name(), &inputs[..4], &["param", "grad", "m", "v"])?;
        if inputs[4] != &Shape::u32([1]) {
            return Err(Error::shape(
                self.name(),
                format!("step count must be [1] u32, got {}", inputs[4]),
            ));
        }
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
        let direct = KernelPlan::direct(self.kernel(inputs, outputs), 5, 0);
        let numel = inputs[0].numel();
        if !numel.is_multiple_of(4) {
            return vec![direct];
        }
        let mut call = self.kernel(inputs, outputs);
        call.entry = "adam_update_vec4";
        let vec4 = KernelPlan {
            variant: "vec4".into(),
            ..KernelPlan::direct(call, 5, 0)
        };
        vec![vec4, direct]
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (grad, t) = (inputs[1].f32(), inputs[4].u32()[0] as i32);
        let [param, m, v] = outputs else {
            unreachable!("mutates() lists three inputs")
        };
        let (param, m, v) = (param.f32_mut(), m.f32_mut(), v.f32_mut());
        let (b1, b2) = (f64::from(self.beta1), f64::from(self.beta2));
        let (lr, wd) = (f64::from(self.lr), f64::from(self.weight_decay));
        for i in 0..param.len() {
            let (w, g) = if self.decoupled {
                (f64::from(param[i]) * (1.0 - lr * wd), f64::from(grad[i]))
            } else {
                let w = f64::from(param[i]);
                (w, f64::from(grad[i]) + wd * w)
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
        expect_arity(self.name(), inputs, 4)?;
        check_same(
            self.name(),
            inputs,
            &["param", "grad", "square_avg", "buffer"],
        )?;
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
        for i in 0..param.len() {
            let g = f64::from(grad[i]) + f64::from(self.weight_decay) * f64::from(param[i]);
            let s = alpha * f64::from(square_avg[i]) + (1.0 - alpha) * g * g;
            square_avg[i] = s as f32;
            let mut d = g / (s.sqrt() + f64::from(self.eps));
            if self.momentum > 0.0 {
                d += f64::from(self.momentum) * f64::from(buffer[i]);
                buffer[i] = d as f32;
            }
            param[i] = (f64::from(param[i]) - f64::from(self.lr) * d) as f32;
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
        if inputs[0].dims != [1] || inputs[0].dtype != DType::U32 {
            return Err(Error::shape(
                self.name(),
                format!("step count must be [1] u32, got {}", inputs[0]),
            ));
        }
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
            },
            vec![p.clone(), p.clone(), p.clone()],
        ),
        CatalogEntry::new(
            SgdUpdate {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.01,
                nesterov: true,
            },
            vec![p.clone(), p.clone(), p.clone()],
        ),
        CatalogEntry::new(
            SgdUpdate {
                lr: 0.1,
                momentum: 0.0,
                weight_decay: 0.0,
                nesterov: false,
            },
            vec![Shape::f32([1031]), Shape::f32([1031]), Shape::f32([1031])],
        ),
        adam_entry(p.clone(), false),
        adam_entry(p.clone(), true),
        rmsprop_entry(p.clone(), 0.0),
        rmsprop_entry(p, 0.9),
        count,
    ]
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
        vec![p.clone(), p.clone(), p.clone(), p],
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
        vec![p.clone(), p.clone(), p.clone(), p, Shape::u32([1])],
    );
    adam.u32_bound = 5;
    // Adam's v is a running mean of squares: never negative.
    adam.prepare = Some(Box::new(|inputs: &mut [CpuTensor]| {
        inputs[3].f32_mut().iter_mut().for_each(|v| *v = v.abs());
        inputs[4].u32_mut()[0] += 1;
    }));
    adam
}
