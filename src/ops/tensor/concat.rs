//! `cat` along one dimension (PyTorch's `torch.cat(tensors, dim)`; Inception's channel
//! concatenation is `dim = 1`), and its backward, `slice`: each input's gradient is its slice
//! of the output's.

use bytemuck::{Pod, Zeroable};

use crate::ir::{
    expect_dtype, BackwardCtx, CpuTensor, DeviceCaps, KernelCall, KernelPlan, OpDef, Operand,
    Shader,
};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/concat.wgsl`.
pub static SHADER: Shader = Shader::new(
    "concat",
    include_str!("../../../shaders/concat.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/concat.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    outer: u32,
    in_row: u32,
    out_row: u32,
    offset: u32,
}

/// `y = cat(x_0, …, x_k−1)` along `dim`: every input has the same rank and the same sizes
/// except along `dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat {
    /// The dimension joined.
    pub dim: usize,
}

/// `y = x[…, start..start + len, …]` along `dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// The dimension cut.
    pub dim: usize,
    /// First index kept.
    pub start: usize,
    /// Indices kept.
    pub len: usize,
}

/// `(outer, inner)`: the products of the dims before and after `dim`.
fn around(shape: &Shape, dim: usize) -> (usize, usize) {
    (
        shape.dims[..dim].iter().product(),
        shape.dims[dim + 1..].iter().product(),
    )
}

impl OpDef for Concat {
    fn name(&self) -> &'static str {
        "cat"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let Some(first) = inputs.first() else {
            return Err(Error::shape(self.name(), "needs at least one input"));
        };
        if self.dim >= first.dims.len() {
            return Err(Error::shape(
                self.name(),
                format!("dim {} out of range for {first}", self.dim),
            ));
        }
        let mut dims = first.dims.clone();
        dims[self.dim] = 0;
        for (i, s) in inputs.iter().enumerate() {
            expect_dtype(self.name(), "input", s, DType::F32)?;
            let same_elsewhere = s.dims.len() == first.dims.len()
                && (0..s.dims.len()).all(|d| d == self.dim || s.dims[d] == first.dims[d]);
            if !same_elsewhere {
                return Err(Error::shape(
                    self.name(),
                    format!(
                        "input {i} is {s}, input 0 is {first}: they may differ only in dim {}",
                        self.dim
                    ),
                ));
            }
            dims[self.dim] += s.dims[self.dim];
        }
        Ok(vec![Shape::f32(dims)])
    }

    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let n_inputs = cx.n_inputs();
        let mut start = 0;
        for i in 0..n_inputs {
            let len = cx.shape(cx.input(i)).dims[self.dim];
            let slice = Slice {
                dim: self.dim,
                start,
                len,
            };
            let grad_x = cx.push(slice, &[grad_y])?[0];
            cx.set_grad_input(i, grad_x);
            start += len;
        }
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        self.copy_call(inputs, outputs, 0, 0)
    }

    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], _caps: &DeviceCaps) -> Vec<KernelPlan> {
        let mut offset = 0;
        let calls = (0..inputs.len())
            .map(|i| {
                let call = self.copy_call(inputs, outputs, i, offset);
                offset += inputs[i].dims[self.dim];
                (call, vec![Operand::Input(i), Operand::Output(0)])
            })
            .collect();
        vec![KernelPlan {
            variant: "direct".into(),
            scratch: Vec::new(),
            calls,
            copies: Vec::new(),
        }]
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (outer, inner) = around(&outputs[0].shape, self.dim);
        let out_row = outputs[0].shape.dims[self.dim] * inner;
        let y = outputs[0].f32_mut();
        let mut offset = 0;
        for x in inputs {
            let in_row = x.shape.dims[self.dim] * inner;
            for o in 0..outer {
                y[o * out_row + offset..o * out_row + offset + in_row]
                    .copy_from_slice(&x.f32()[o * in_row..(o + 1) * in_row]);
            }
            offset += in_row;
        }
    }
}

impl Concat {
    /// The copy of input `i`, which starts at index `start` along `dim` of the output.
    fn copy_call(
        &self,
        inputs: &[&Shape],
        outputs: &[&Shape],
        i: usize,
        start: usize,
    ) -> KernelCall {
        let (outer, inner) = around(outputs[0], self.dim);
        let params = Params {
            outer: outer as u32,
            in_row: (inputs[i].dims[self.dim] * inner) as u32,
            out_row: (outputs[0].dims[self.dim] * inner) as u32,
            offset: (start * inner) as u32,
        };
        KernelCall::per_element(&SHADER, "concat_copy", &params, inputs[i].numel())
    }
}

impl OpDef for Slice {
    fn name(&self) -> &'static str {
        "slice"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        crate::ir::expect_arity(self.name(), inputs, 1)?;
        let x = inputs[0];
        expect_dtype(self.name(), "input", x, DType::F32)?;
        if self.dim >= x.dims.len() || self.start + self.len > x.dims[self.dim] || self.len == 0 {
            return Err(Error::shape(
                self.name(),
                format!(
                    "[{}..{}] along dim {} does not fit {x}",
                    self.start,
                    self.start + self.len,
                    self.dim
                ),
            ));
        }
        let mut dims = x.dims.clone();
        dims[self.dim] = self.len;
        Ok(vec![Shape::f32(dims)])
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let (outer, inner) = around(inputs[0], self.dim);
        let params = Params {
            outer: outer as u32,
            in_row: (inputs[0].dims[self.dim] * inner) as u32,
            out_row: (self.len * inner) as u32,
            offset: (self.start * inner) as u32,
        };
        KernelCall::per_element(&SHADER, "slice", &params, outputs[0].numel())
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (outer, inner) = around(&inputs[0].shape, self.dim);
        let in_row = inputs[0].shape.dims[self.dim] * inner;
        let (out_row, offset) = (self.len * inner, self.start * inner);
        let x = inputs[0].f32();
        for (o, row) in outputs[0]
            .f32_mut()
            .chunks_mut(out_row)
            .enumerate()
            .take(outer)
        {
            row.copy_from_slice(&x[o * in_row + offset..o * in_row + offset + out_row]);
        }
    }
}

impl Graph {
    /// `torch.cat(xs, dim)`: same rank and sizes except along `dim`.
    pub fn cat(&mut self, xs: &[TensorId], dim: usize) -> Result<TensorId> {
        Ok(self.push(Concat { dim }, xs)?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    vec![
        // Inception's channel concatenation of four branches, odd sizes.
        CatalogEntry::new(
            Concat { dim: 1 },
            vec![
                Shape::f32([2, 3, 5, 7]),
                Shape::f32([2, 1, 5, 7]),
                Shape::f32([2, 6, 5, 7]),
                Shape::f32([2, 2, 5, 7]),
            ],
        ),
        CatalogEntry::new(
            Concat { dim: 0 },
            vec![Shape::f32([3, 11]), Shape::f32([1, 11])],
        ),
        CatalogEntry::new(
            Concat { dim: 3 },
            vec![Shape::f32([2, 3, 4, 5]), Shape::f32([2, 3, 4, 2])],
        ),
        CatalogEntry::new(
            Slice {
                dim: 1,
                start: 4,
                len: 6,
            },
            vec![Shape::f32([2, 12, 5, 7])],
        ),
        CatalogEntry::new(
            Slice {
                dim: 3,
                start: 0,
                len: 1,
            },
            vec![Shape::f32([3, 2, 4, 5])],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn joins_channels_in_order() {
        let a = CpuTensor::from_f32([1, 1, 1, 2], vec![1.0, 2.0]);
        let b = CpuTensor::from_f32([1, 2, 1, 2], vec![3.0, 4.0, 5.0, 6.0]);
        let y = run_reference(&Concat { dim: 1 }, &[a, b]);
        assert_eq!(y[0].shape.dims, [1, 3, 1, 2]);
        assert_eq!(y[0].f32(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let s = Slice {
            dim: 1,
            start: 1,
            len: 2,
        };
        assert_eq!(
            run_reference(&s, &[y[0].clone()])[0].f32(),
            [3.0, 4.0, 5.0, 6.0]
        );
    }

    #[test]
    fn mismatched_inputs_are_named() {
        let err = Concat { dim: 1 }
            .infer(&[&Shape::f32([2, 3, 5, 5]), &Shape::f32([2, 3, 4, 5])])
            .unwrap_err();
        assert!(
            err.to_string().contains("may differ only in dim 1"),
            "{err}"
        );
    }
}
