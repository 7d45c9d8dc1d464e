//! Reverse-mode differentiation as a graph transformation: the backward pass is appended to
//! the same graph, so the scheduler and memory planner see one training step.

use std::collections::HashMap;

use crate::ir::{BackwardCtx, Graph, TensorId};
use crate::ops::tensor::add::Add;
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
    let n_forward = g.nodes().len();
    let mut grads: HashMap<TensorId, TensorId> = seeds.iter().copied().collect();
    let outer_scope = g.scope().to_string();

    for node_idx in (0..n_forward).rev() {
        let node = g.nodes()[node_idx].clone();
        let grad_outputs: Vec<Option<TensorId>> =
            node.outputs.iter().map(|t| grads.get(t).copied()).collect();
        if grad_outputs.iter().all(Option::is_none) {
            continue; // Not on a path to the seeds.
        }
        g.set_scope(format!("{}.backward", node.name));
        let mut cx = BackwardCtx::new(g, &node, grad_outputs);
        node.op.backward(&mut cx)?;
        let grad_inputs = cx.into_grad_inputs();
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
    g.set_scope(outer_scope);
    wrt.iter()
        .map(|t| {
            grads
                .get(t)
                .copied()
                .ok_or_else(|| Error::NoGradient(g.tensor(*t).name.clone()))
        })
        .collect()
}
