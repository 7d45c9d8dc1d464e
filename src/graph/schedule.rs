//! From a graph and what a run must produce to the ordered list of nodes to run, with the live
//! range of every transient tensor.
//!
//! Nodes that neither feed a requested output nor an effect (an in-place update) are dropped.

use std::collections::HashMap;

use crate::graph::memory::LiveRange;
use crate::ir::{Graph, NodeId, TensorId};

/// One node to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The node.
    pub node: NodeId,
    /// False for views (reshape): they share their input's buffer and dispatch nothing.
    pub dispatch: bool,
}

/// The nodes one run executes, in order, and where each tensor lives.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Nodes in execution order.
    pub steps: Vec<Step>,
    /// For every tensor of the graph, the tensor that owns its storage (itself, or the source
    /// of a view chain).
    pub storage: Vec<TensorId>,
    /// Live range of every transient storage tensor this run touches, as step indices.
    pub live: HashMap<TensorId, LiveRange>,
}

/// Schedules the nodes needed for `outputs` (kept readable after the run) and `effects`
/// (nodes run for their in-place updates).
pub fn schedule(g: &Graph, outputs: &[TensorId], effects: &[NodeId]) -> Schedule {
    let mut needed_tensor = vec![false; g.n_tensors()];
    let mut needed_node = vec![false; g.nodes().len()];
    for &t in outputs {
        needed_tensor[t.0 as usize] = true;
    }
    for &n in effects {
        needed_node[n.0 as usize] = true;
    }
    for (node_idx, node) in g.nodes().iter().enumerate().rev() {
        if node.outputs.iter().any(|t| needed_tensor[t.0 as usize]) {
            needed_node[node_idx] = true;
        }
        if needed_node[node_idx] {
            for t in &node.inputs {
                needed_tensor[t.0 as usize] = true;
            }
        }
    }

    let mut storage: Vec<TensorId> = g.tensor_ids().collect();
    let mut steps = Vec::new();
    for (node_idx, node) in g.nodes().iter().enumerate() {
        if !needed_node[node_idx] {
            continue;
        }
        let dispatch = !node.op.is_view();
        if !dispatch {
            storage[node.outputs[0].0 as usize] = storage[node.inputs[0].0 as usize];
        }
        steps.push(Step {
            node: NodeId(node_idx as u32),
            dispatch,
        });
    }

    let mut live: HashMap<TensorId, LiveRange> = HashMap::new();
    for (step_idx, step) in steps.iter().enumerate() {
        let node = g.node(step.node);
        for &t in node.inputs.iter().chain(&node.outputs) {
            let root = storage[t.0 as usize];
            if g.tensor(root).is_persistent() {
                continue;
            }
            let bytes = g.shape(root).bytes();
            let range = live.entry(root).or_insert(LiveRange {
                first: step_idx,
                last: step_idx,
                bytes,
            });
            range.last = range.last.max(step_idx);
        }
    }
    for &t in outputs {
        if let Some(range) = live.get_mut(&storage[t.0 as usize]) {
            range.last = steps.len(); // Readable after the run: nothing may reuse its buffer.
        }
    }
    Schedule {
        steps,
        storage,
        live,
    }
}

impl Schedule {
    /// A readable listing: one line per step with its inputs and outputs.
    pub fn describe(&self, g: &Graph) -> String {
        let mut res = String::new();
        for (step_idx, step) in self.steps.iter().enumerate() {
            let node = g.node(step.node);
            let names = |ts: &[TensorId]| {
                ts.iter()
                    .map(|t| format!("{t}{}", g.shape(*t)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            res += &format!(
                "{step_idx:3} {:<22} {:<28} ({}) -> ({}){}\n",
                node.name,
                node.op.name(),
                names(&node.inputs),
                names(&node.outputs),
                if step.dispatch { "" } else { " [view]" }
            );
        }
        res
    }
}
