//! The reference interpreter: runs a schedule with each op's plain CPU `reference`. It is the
//! spec that the GPU executable is tested against, and it needs no GPU.

use crate::graph::Schedule;
use crate::ir::CpuTensor;
use crate::ir::{Graph, TensorId, TensorKind};
use crate::shape::Shape;
use crate::{Error, Result};

/// Tensor values of one graph, on the host.
#[derive(Clone, Debug)]
pub struct CpuInterpreter {
    values: Vec<Option<CpuTensor>>,
    /// Each tensor's name and shape, to check what is set and to name what is missing.
    infos: Vec<(String, Shape)>,
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
        let infos = g
            .tensor_ids()
            .map(|t| (g.tensor(t).name.clone(), g.shape(t).clone()))
            .collect();
        CpuInterpreter { values, infos }
    }

    /// Sets a tensor's value (an input, or a parameter to perturb); an error if the graph has
    /// no such tensor or the value's shape or dtype differs from the tensor's.
    pub fn set(&mut self, t: TensorId, value: CpuTensor) -> Result<()> {
        let (name, shape) = self.info(t)?;
        if value.shape != *shape {
            return Err(Error::InvalidArgument(format!(
                "tensor '{name}' ({t}) is {shape}, the value given is {}",
                value.shape
            )));
        }
        self.values[t.0 as usize] = Some(value);
        Ok(())
    }

    /// A tensor's value; an error if it was never computed or set.
    pub fn get(&self, t: TensorId) -> Result<&CpuTensor> {
        let (name, _) = self.info(t)?;
        self.values[t.0 as usize].as_ref().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "tensor '{name}' ({t}) has no value: the schedule run did not compute it and \
                 it was not set"
            ))
        })
    }

    fn info(&self, t: TensorId) -> Result<&(String, Shape)> {
        self.infos.get(t.0 as usize).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{t} is not a tensor of this interpreter's graph ({} tensors)",
                self.infos.len()
            ))
        })
    }

    /// Runs every step of `schedule` in order; an error names the first input it needs that
    /// was never set (or a graph other than the interpreter's).
    pub fn run(&mut self, g: &Graph, schedule: &Schedule) -> Result<()> {
        if g.n_tensors() != self.infos.len() {
            return Err(Error::InvalidArgument(format!(
                "the graph has {} tensors, the interpreter was made for one of {}",
                g.n_tensors(),
                self.infos.len()
            )));
        }
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
                    .map(|&i| self.get(node.inputs[i]).cloned())
                    .collect::<Result<_>>()?
            };
            let inputs: Vec<&CpuTensor> = node
                .inputs
                .iter()
                .map(|&t| self.get(t))
                .collect::<Result<_>>()?;
            node.op.reference(&inputs, &mut outputs);
            let targets: Vec<TensorId> = if mutates.is_empty() {
                node.outputs.clone()
            } else {
                mutates.iter().map(|&i| node.inputs[i]).collect()
            };
            for (t, value) in targets.into_iter().zip(outputs) {
                self.values[t.0 as usize] = Some(value);
            }
        }
        Ok(())
    }
}
