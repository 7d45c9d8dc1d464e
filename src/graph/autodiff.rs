//! Reverse-mode differentiation as a graph transformation: the backward pass is appended to
//! the same graph, so the scheduler and memory planner see one training step.

use std::collections::HashMap;
use std::sync::Arc;

use crate::graph::{Graph, Node, TensorId};
use crate::ops::add::Add;
use crate::ops::{CpuTensor, OpDef};
use crate::{Error, Result};

/// Appends the nodes computing the gradients of `seeds` (pairs of a tensor and the gradient
/// flowing into it, e.g. `(loss, ones)`) with respect to each of `wrt`.
///
/// The graph is append-only, so walking the forward nodes in reverse visits every consumer of
/// a tensor before the node that produced it.
pub fn append_backward(
    g: &mut Graph,
    seeds: &[(TensorId, TensorId)],
    wrt: &[TensorId],
) -> Result<Vec<TensorId>> {
    let n_forward = g.nodes.len();
    let mut grads: HashMap<TensorId, TensorId> = seeds.iter().copied().collect();
    let outer_scope = g.scope.clone();

    for node_idx in (0..n_forward).rev() {
        let node = g.nodes[node_idx].clone();
        let grad_outputs: Vec<Option<TensorId>> =
            node.outputs.iter().map(|t| grads.get(t).copied()).collect();
        if grad_outputs.iter().all(Option::is_none) {
            continue; // Not on a path to the seeds.
        }
        g.scope = format!("{}.backward", node.name);
        let mut cx = BackwardCtx {
            g,
            node: &node,
            grad_outputs,
            grad_inputs: vec![None; node.inputs.len()],
        };
        node.op.backward(&mut cx)?;
        let grad_inputs = cx.grad_inputs;
        for (&input, grad) in node.inputs.iter().zip(grad_inputs) {
            let Some(grad) = grad else { continue };
            // A tensor read by several nodes receives the sum of their gradients.
            let total = match grads.get(&input) {
                Some(&prev) => g.push(Add, &[prev, grad])?[0],
                None => grad,
            };
            grads.insert(input, total);
        }
    }
    g.scope = outer_scope;
    wrt.iter()
        .map(|t| {
            grads
                .get(t)
                .copied()
                .ok_or_else(|| Error::NoGradient(g.tensor(*t).name.clone()))
        })
        .collect()
}

/// What a backward rule sees: the forward node, the gradients of its outputs, and a way to
/// append nodes.
pub struct BackwardCtx<'g> {
    g: &'g mut Graph,
    node: &'g Node,
    grad_outputs: Vec<Option<TensorId>>,
    grad_inputs: Vec<Option<TensorId>>,
}

impl BackwardCtx<'_> {
    /// The forward node's input `i`.
    pub fn input(&self, i: usize) -> TensorId {
        self.node.inputs[i]
    }

    /// The forward node's output `i`.
    pub fn output(&self, i: usize) -> TensorId {
        self.node.outputs[i]
    }

    /// The gradient flowing into output `i` (zeros when none does).
    pub fn grad_output(&mut self, i: usize) -> TensorId {
        match self.grad_outputs[i] {
            Some(t) => t,
            None => {
                let shape = self.g.shape(self.node.outputs[i]).clone();
                let zeros = self.g.constant("zeros", CpuTensor::zeros(&shape));
                self.grad_outputs[i] = Some(zeros);
                zeros
            }
        }
    }

    /// True when some gradient flows into output `i`.
    pub fn has_grad_output(&self, i: usize) -> bool {
        self.grad_outputs[i].is_some()
    }

    /// Shape of any tensor.
    pub fn shape(&self, t: TensorId) -> &crate::shape::Shape {
        self.g.shape(t)
    }

    /// The op that produced `t`, if a node did.
    pub fn producer(&self, t: TensorId) -> Option<&dyn crate::ops::OpDef> {
        match self.g.tensor(t).kind {
            crate::graph::TensorKind::Activation(node) => Some(self.g.node(node).op.as_ref()),
            _ => None,
        }
    }

    /// `grad_y` masked by a ReLU's backward (`y` its output), unless the op that produced
    /// `grad_y` already zeroed it wherever the ReLU was inactive.
    pub fn relu_backward(&mut self, grad_y: TensorId, y: TensorId) -> Result<TensorId> {
        if self
            .producer(grad_y)
            .is_some_and(crate::ops::OpDef::gradient_relu_masked)
        {
            return Ok(grad_y);
        }
        Ok(self.push(
            crate::ops::activation::ActivationBackward(crate::ops::activation::Activation::Relu),
            &[grad_y, y],
        )?[0])
    }

    /// Appends a gradient node; returns its outputs.
    pub fn push(&mut self, op: impl OpDef + 'static, inputs: &[TensorId]) -> Result<Vec<TensorId>> {
        self.g.push_arc(Arc::new(op), inputs)
    }

    /// Records the gradient of input `i`.
    pub fn set_grad_input(&mut self, i: usize, grad: TensorId) {
        self.grad_inputs[i] = Some(grad);
    }
}
