//! The static graph: tensors and the nodes that produce them.
//!
//! The graph is append-only, so node order is a topological order and no sort pass exists.
//! Every shape is checked in [`Graph::push`]; nothing later returns a shape error.

use std::fmt;
use std::sync::Arc;

use crate::ir::{CpuTensor, OpDef};
use crate::shape::Shape;
use crate::{Error, Result};

/// Index of a tensor in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u32);

/// Index of a node in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for TensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// Where a tensor's value comes from. Everything but `Activation` is persistent: it keeps its
/// own GPU buffer for the executable's lifetime.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorKind {
    /// Written by the host before each run (images, labels).
    Input,
    /// A trainable parameter, with its initial value.
    Param(CpuTensor),
    /// Optimizer or metric state, starting at the given value.
    State(CpuTensor),
    /// A constant (the loss seed, zero gradients).
    Const(CpuTensor),
    /// Produced by a node during a run.
    Activation(NodeId),
}

/// A tensor's metadata.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Shape and dtype.
    pub shape: Shape,
    /// Where its value comes from.
    pub kind: TensorKind,
    /// Human-readable name, e.g. `conv1.weight`.
    pub name: String,
}

impl TensorInfo {
    /// True for tensors with their own buffer (not planned by the memory planner).
    pub fn is_persistent(&self) -> bool {
        !matches!(self.kind, TensorKind::Activation(_))
    }
}

/// One op applied to tensors.
#[derive(Clone, Debug)]
pub struct Node {
    /// The op.
    pub op: Arc<dyn OpDef>,
    /// Input tensors, in the op's order.
    pub inputs: Vec<TensorId>,
    /// Output tensors.
    pub outputs: Vec<TensorId>,
    /// Layer name (e.g. `conv1`, `conv1.grad`) for errors and labels.
    pub name: String,
}

/// An append-only graph of ops.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    tensors: Vec<TensorInfo>,
    nodes: Vec<Node>,
    scope: String,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the layer name given to nodes pushed from now on (used in errors and labels).
    pub fn set_scope(&mut self, scope: impl Into<String>) {
        self.scope = scope.into();
    }

    /// The current layer name.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// A host-written input, e.g. a batch of images.
    pub fn input(&mut self, name: &str, shape: Shape) -> TensorId {
        self.add_tensor(shape, TensorKind::Input, name.to_string())
    }

    /// A trainable parameter with its initial value.
    pub fn param(&mut self, name: &str, init: CpuTensor) -> TensorId {
        self.add_tensor(
            init.shape.clone(),
            TensorKind::Param(init),
            name.to_string(),
        )
    }

    /// Persistent state (optimizer moments, metric sums) starting at `init`.
    pub fn state(&mut self, name: &str, init: CpuTensor) -> TensorId {
        self.add_tensor(
            init.shape.clone(),
            TensorKind::State(init),
            name.to_string(),
        )
    }

    /// A constant tensor.
    pub fn constant(&mut self, name: &str, value: CpuTensor) -> TensorId {
        self.add_tensor(
            value.shape.clone(),
            TensorKind::Const(value),
            name.to_string(),
        )
    }

    /// Appends a node after checking shapes; returns its outputs.
    pub fn push(&mut self, op: impl OpDef + 'static, inputs: &[TensorId]) -> Result<Vec<TensorId>> {
        self.push_arc(Arc::new(op), inputs)
    }

    /// Appends a node after checking shapes; returns the node (its outputs are
    /// `g.node(id).outputs`): what effects (in-place updates, metrics) hand to a program spec.
    pub fn push_node(&mut self, op: impl OpDef + 'static, inputs: &[TensorId]) -> Result<NodeId> {
        self.push_arc_node(Arc::new(op), inputs)
    }

    /// [`Graph::push`] for an op that is already shared.
    pub fn push_arc(&mut self, op: Arc<dyn OpDef>, inputs: &[TensorId]) -> Result<Vec<TensorId>> {
        let node = self.push_arc_node(op, inputs)?;
        Ok(self.nodes[node.0 as usize].outputs.clone())
    }

    /// [`Graph::push_node`] for an op that is already shared.
    pub fn push_arc_node(&mut self, op: Arc<dyn OpDef>, inputs: &[TensorId]) -> Result<NodeId> {
        let layer = if self.scope.is_empty() {
            format!("node {}", self.nodes.len())
        } else {
            self.scope.clone()
        };
        if let Some(bad) = inputs.iter().find(|t| t.0 as usize >= self.tensors.len()) {
            return Err(Error::InvalidArgument(format!(
                "{layer} ({}): input {bad:?} is not a tensor of this graph ({} tensors)",
                op.name(),
                self.tensors.len()
            )));
        }
        let shapes: Vec<&Shape> = inputs
            .iter()
            .map(|&t| &self.tensors[t.0 as usize].shape)
            .collect();
        let out_shapes = op.infer(&shapes).map_err(|e| match e {
            Error::Shape { op, message, .. } => Error::Shape {
                layer: layer.clone(),
                op,
                message,
            },
            other => other,
        })?;
        for &idx in op.mutates() {
            let info = &self.tensors[inputs[idx].0 as usize];
            if !matches!(info.kind, TensorKind::Param(_) | TensorKind::State(_)) {
                return Err(Error::Shape {
                    layer,
                    op: op.name(),
                    message: format!(
                        "input {idx} ({}) is updated in place, so it must be a parameter or state",
                        info.name
                    ),
                });
            }
        }
        let node_id = NodeId(self.nodes.len() as u32);
        let outputs: Vec<TensorId> = out_shapes
            .into_iter()
            .enumerate()
            .map(|(i, shape)| {
                self.add_tensor(
                    shape,
                    TensorKind::Activation(node_id),
                    format!("{layer}:{}.{i}", op.name()),
                )
            })
            .collect();
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            outputs,
            name: layer,
        });
        Ok(node_id)
    }

    /// Metadata of a tensor.
    pub fn tensor(&self, t: TensorId) -> &TensorInfo {
        &self.tensors[t.0 as usize]
    }

    /// Shape of a tensor.
    pub fn shape(&self, t: TensorId) -> &Shape {
        &self.tensors[t.0 as usize].shape
    }

    /// A node.
    pub fn node(&self, n: NodeId) -> &Node {
        &self.nodes[n.0 as usize]
    }

    /// All nodes, in topological (= insertion) order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Number of tensors.
    pub fn n_tensors(&self) -> usize {
        self.tensors.len()
    }

    /// All tensor ids.
    pub fn tensor_ids(&self) -> impl Iterator<Item = TensorId> {
        (0..self.tensors.len() as u32).map(TensorId)
    }

    /// Replaces the initial value of a parameter or state tensor (e.g. when loading weights).
    pub fn set_initial_value(&mut self, t: TensorId, value: CpuTensor) -> Result<()> {
        let info = &mut self.tensors[t.0 as usize];
        if info.shape != value.shape {
            return Err(Error::InvalidArgument(format!(
                "{}: shape {} does not match the new value's {}",
                info.name, info.shape, value.shape
            )));
        }
        match &mut info.kind {
            TensorKind::Param(v) | TensorKind::State(v) | TensorKind::Const(v) => *v = value,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{} has no initial value",
                    info.name
                )))
            }
        }
        Ok(())
    }

    fn add_tensor(&mut self, shape: Shape, kind: TensorKind, name: String) -> TensorId {
        self.tensors.push(TensorInfo { shape, kind, name });
        TensorId(self.tensors.len() as u32 - 1)
    }
}

/// What a backward rule sees: the forward node, the gradients of its outputs, and a way to
/// append nodes.
pub struct BackwardCtx<'g> {
    g: &'g mut Graph,
    node: &'g Node,
    grad_outputs: Vec<Option<TensorId>>,
    grad_inputs: Vec<Option<TensorId>>,
}

impl<'g> BackwardCtx<'g> {
    /// The context for `node`'s backward rule, given the gradients of its outputs.
    pub(crate) fn new(
        g: &'g mut Graph,
        node: &'g Node,
        grad_outputs: Vec<Option<TensorId>>,
    ) -> Self {
        let n_inputs = node.inputs.len();
        BackwardCtx {
            g,
            node,
            grad_outputs,
            grad_inputs: vec![None; n_inputs],
        }
    }

    /// The gradients the rule recorded, one per input of the node.
    pub(crate) fn into_grad_inputs(self) -> Vec<Option<TensorId>> {
        self.grad_inputs
    }

    /// How many inputs the forward node has.
    pub fn n_inputs(&self) -> usize {
        self.node.inputs.len()
    }

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
    pub fn producer(&self, t: TensorId) -> Option<&dyn crate::ir::OpDef> {
        match self.g.tensor(t).kind {
            TensorKind::Activation(node) => Some(self.g.node(node).op.as_ref()),
            _ => None,
        }
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
