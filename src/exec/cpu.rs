//! The reference interpreter: runs a schedule with each op's plain CPU `reference`. It is the
//! spec that the GPU executable is tested against, and it needs no GPU.

use crate::graph::Schedule;
use crate::ir::CpuTensor;
use crate::ir::{Graph, TensorId, TensorKind};

/// Tensor values of one graph, on the host.
#[derive(Clone, Debug)]
pub struct CpuInterpreter {
    values: Vec<Option<CpuTensor>>,
}

impl CpuInterpreter {
    /// Parameters, state and constants start at their initial values; inputs must be `set`.
    pub fn new(g: &Graph) -> Self {
        let values = g
            .tensor_ids()
            .map(|t| match &g.tensor(t).kind {
                TensorKind::Param(v) | TensorKind::State(v) | TensorKind::Const(v) => {
                    Some(v.clone())
                }
                TensorKind::Input | TensorKind::Activation(_) => None,
            })
            .collect();
        CpuInterpreter { values }
    }

    /// Sets a tensor's value (an input, or a parameter to perturb).
    pub fn set(&mut self, t: TensorId, value: CpuTensor) {
        self.values[t.0 as usize] = Some(value);
    }

    /// A tensor's value; panics if it was never computed or set.
    pub fn get(&self, t: TensorId) -> &CpuTensor {
        self.values[t.0 as usize]
            .as_ref()
            .unwrap_or_else(|| panic!("{t} has no value: not computed by the schedule, nor set"))
    }

    /// Runs every step of `schedule` in order.
    pub fn run(&mut self, g: &Graph, schedule: &Schedule) {
        for step in &schedule.steps {
            let node = g.node(step.node);
            let mutates = node.op.mutates();
            let mut outputs: Vec<CpuTensor> = if mutates.is_empty() {
                node.outputs
                    .iter()
                    .map(|&t| CpuTensor::zeros(g.shape(t)))
                    .collect()
            } else {
                mutates
                    .iter()
                    .map(|&i| self.get(node.inputs[i]).clone())
                    .collect()
            };
            let inputs: Vec<&CpuTensor> = node.inputs.iter().map(|&t| self.get(t)).collect();
            node.op.reference(&inputs, &mut outputs);
            let targets: Vec<TensorId> = if mutates.is_empty() {
                node.outputs.clone()
            } else {
                mutates.iter().map(|&i| node.inputs[i]).collect()
            };
            for (t, value) in targets.into_iter().zip(outputs) {
                self.set(t, value);
            }
        }
    }
}
