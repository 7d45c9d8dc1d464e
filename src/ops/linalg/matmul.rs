//! `matmul`: `C[m, n] = A[m, k] · B[k, n]`, either operand optionally stored transposed.
//!
//! Transposes are strides, not copies, so a linear layer's forward (`x · Wᵀ`) and both of its
//! backward products run the same register-blocked kernel.

use bytemuck::{Pod, Zeroable};

use crate::ir::{
    expect_arity, expect_dtype, BackwardCtx, CpuTensor, DeviceCaps, KernelCall, KernelPlan, OpDef,
    Operand, Shader, TextureCopy,
};
use crate::ir::{Graph, TensorId};
use crate::kernels::gemm::{self, GemmParams, MatrixView};
use crate::kernels::tiled::{self, TiledKind, TiledParams};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/matmul.wgsl`.
pub static SHADER: Shader = Shader::new(
    "matmul",
    include_str!("../../../shaders/matmul.wgsl"),
    size_of::<Params>(),
);

/// Invocations per workgroup along m and n (`WG_M`, `WG_N` overrides); each computes 4×4 outputs.
const WG_M: u32 = 8;
const WG_N: u32 = 8;
const TILE: u32 = 4;

/// Mirrors `struct Params` in `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_stride_m: u32,
    a_stride_k: u32,
    b_stride_k: u32,
    b_stride_n: u32,
    _pad: u32,
}

/// `C = op(A) · op(B)`. `trans_a`: `a` is stored `[k, m]`; `trans_b`: `b` is stored `[n, k]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matmul {
    /// `a` holds Aᵀ.
    pub trans_a: bool,
    /// `b` holds Bᵀ.
    pub trans_b: bool,
}

impl Matmul {
    /// (m, k, n) from the stored shapes; checks that the inner sizes agree.
    fn mkn(&self, a: &Shape, b: &Shape) -> Result<(usize, usize, usize)> {
        let op = "matmul";
        let [a0, a1] = a.dims2(op, "a")?;
        let [b0, b1] = b.dims2(op, "b")?;
        let (m, k) = if self.trans_a { (a1, a0) } else { (a0, a1) };
        let (kb, n) = if self.trans_b { (b1, b0) } else { (b0, b1) };
        if k != kb {
            return Err(Error::shape(op, format!("inner sizes differ: a {a} gives k = {k}, b {b} gives k = {kb} (trans_a {}, trans_b {})", self.trans_a, self.trans_b)));
        }
        Ok((m, k, n))
    }

    /// Flat index strides: A(i, kk) = a[i·sm + kk·sk], B(kk, j) = b[kk·sk + j·sn].
    fn strides(&self, m: usize, k: usize, n: usize) -> [usize; 4] {
        let (a_sm, a_sk) = if self.trans_a { (1, m) } else { (k, 1) };
        let (b_sk, b_sn) = if self.trans_b { (1, k) } else { (n, 1) };
        [a_sm, a_sk, b_sk, b_sn]
    }
}

impl OpDef for Matmul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        expect_dtype(self.name(), "a", inputs[0], DType::F32)?;
        expect_dtype(self.name(), "b", inputs[1], DType::F32)?;
        let (m, _, n) = self.mkn(inputs[0], inputs[1])?;
        Ok(vec![Shape::f32([m, n])])
    }

    // C = A·B ⇒ grad_A = grad_C·Bᵀ, grad_B = Aᵀ·grad_C; each written in the stored layout of
    // its operand, so no transpose is ever materialised.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_c = cx.grad_output(0);
        let (a, b) = (cx.input(0), cx.input(1));
        let (ta, tb) = (self.trans_a, self.trans_b);
        let grad_a = if ta {
            cx.push(
                Matmul {
                    trans_a: tb,
                    trans_b: true,
                },
                &[b, grad_c],
            )?[0] // stored Aᵀ = B·grad_Cᵀ
        } else {
            cx.push(
                Matmul {
                    trans_a: false,
                    trans_b: !tb,
                },
                &[grad_c, b],
            )?[0]
        };
        let grad_b = if tb {
            cx.push(
                Matmul {
                    trans_a: true,
                    trans_b: ta,
                },
                &[grad_c, a],
            )?[0] // stored Bᵀ = grad_Cᵀ·A
        } else {
            cx.push(
                Matmul {
                    trans_a: !ta,
                    trans_b: false,
                },
                &[a, grad_c],
            )?[0]
        };
        cx.set_grad_input(0, grad_a);
        cx.set_grad_input(1, grad_b);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let (m, k, n) = self
            .mkn(inputs[0], inputs[1])
            .expect("infer checked the shapes");
        let [a_sm, a_sk, b_sk, b_sn] = self.strides(m, k, n);
        let u = |v: usize| v as u32;
        let params = Params {
            m: u(m),
            n: u(n),
            k: u(k),
            a_stride_m: u(a_sm),
            a_stride_k: u(a_sk),
            b_stride_k: u(b_sk),
            b_stride_n: u(b_sn),
            _pad: 0,
        };
        let grid = [u(n).div_ceil(TILE * WG_N), u(m).div_ceil(TILE * WG_M), 1];
        KernelCall::grid(&SHADER, "matmul_forward", &params, grid)
            .with_overrides(&[("WG_M", f64::from(WG_M)), ("WG_N", f64::from(WG_N))])
    }

    // The texture GEMM variants first (src/kernels/gemm.rs), then the direct kernel.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let (m, k, n) = self
            .mkn(inputs[0], inputs[1])
            .expect("infer checked the shapes");
        let [a_sm, a_sk, b_sk, b_sn] = self.strides(m, k, n);
        let a_view = MatrixView::strided(m, k, a_sm, a_sk);
        let b_view = MatrixView {
            rows_pad: k.div_ceil(4) * 4,
            ..MatrixView::strided(k, n, b_sk, b_sn)
        };
        let packs = [
            a_view.pack(Operand::Input(0), Operand::Scratch(0)),
            b_view.pack(Operand::Input(1), Operand::Scratch(1)),
        ];
        let params = GemmParams {
            inner: n as u32,
            row_stride: n as u32,
            ..GemmParams::default()
        };
        // On GPUs, first the workgroup-tiled GEMM straight from the buffers.
        let tiled_params = TiledParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            a_sr: a_sm as u32,
            a_sc: a_sk as u32,
            b_sr: b_sk as u32,
            b_sc: b_sn as u32,
            ..TiledParams::default()
        };
        let mut res = tiled::plans(
            caps,
            TiledKind::Matmul { bias: false },
            tiled_params,
            &[Operand::Input(0), Operand::Input(1), Operand::Output(0)],
        );
        // No plans where the packed textures would not fit the adapter.
        res.extend(gemm::packed_outer_plans(
            caps,
            [m, k, n],
            &packs,
            params,
            (false, false),
            &[Operand::Output(0)],
        ));
        // Operands already in the packed layout (row-major, rows of whole 256-byte texel
        // runs) can be copied into their textures instead of packed by a kernel, where they
        // are unchanged since the program started (the executable checks).
        let copies: Vec<TextureCopy> = [
            (!self.trans_a)
                .then(|| TextureCopy::of_rows(0, 0, m, k))
                .flatten(),
            (!self.trans_b && k.is_multiple_of(4))
                .then(|| TextureCopy::of_rows(1, 1, k, n))
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .collect();
        // Pack call `i` writes scratch texture `i`.
        let replaced: Vec<usize> = copies.iter().map(|c| c.scratch).collect();
        let copied: Vec<KernelPlan> = res
            .iter()
            .filter(|p| !p.variant.starts_with("tiled-"))
            .filter_map(|p| gemm::with_copies(p, &replaced, copies.clone()))
            .collect();
        res.extend(copied);
        res.push(KernelPlan::direct(self.kernel(inputs, outputs), 2, 1));
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (m, k, n) = self
            .mkn(&inputs[0].shape, &inputs[1].shape)
            .expect("infer checked the shapes");
        let [a_sm, a_sk, b_sk, b_sn] = self.strides(m, k, n);
        let (a, b) = (inputs[0].f32(), inputs[1].f32());
        let c = outputs[0].f32_mut();
        for i in 0..m {
            for j in 0..n {
                let acc: f64 = (0..k)
                    .map(|kk| {
                        f64::from(a[i * a_sm + kk * a_sk]) * f64::from(b[kk * b_sk + j * b_sn])
                    })
                    .sum();
                c[i * n + j] = acc as f32;
            }
        }
    }
}

impl Graph {
    /// `c = a · b` for `a: [m, k]`, `b: [k, n]`; see [`Matmul`] for the transposed forms.
    pub fn matmul(
        &mut self,
        a: TensorId,
        b: TensorId,
        trans_a: bool,
        trans_b: bool,
    ) -> Result<TensorId> {
        Ok(self.push(Matmul { trans_a, trans_b }, &[a, b])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // Sizes straddle the 32×32 workgroup tile and the 4×4 register block.
    for (m, k, n) in [(37, 19, 45), (5, 70, 3), (64, 33, 65)] {
        for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = if trans_a {
                Shape::f32([k, m])
            } else {
                Shape::f32([m, k])
            };
            let b = if trans_b {
                Shape::f32([n, k])
            } else {
                Shape::f32([k, n])
            };
            res.push(CatalogEntry::new(Matmul { trans_a, trans_b }, vec![a, b]));
        }
    }
    // Rows of whole 256-byte runs: A, B or both copied into their textures, not packed.
    for (m, k, n) in [(7, 64, 45), (37, 36, 128), (9, 128, 192)] {
        let op = Matmul {
            trans_a: false,
            trans_b: false,
        };
        res.push(CatalogEntry::new(
            op,
            vec![Shape::f32([m, k]), Shape::f32([k, n])],
        ));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn reference_and_transposes_agree() {
        // A = [[1, 2, 3], [4, 5, 6]], B = [[1, 0], [0, 1], [1, 1]] ⇒ C = [[4, 5], [10, 11]].
        let a = CpuTensor::from_f32([2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = CpuTensor::from_f32([3, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let c = run_reference(
            &Matmul {
                trans_a: false,
                trans_b: false,
            },
            &[a, b],
        );
        assert_eq!(c[0].f32(), [4.0, 5.0, 10.0, 11.0]);
        let at = CpuTensor::from_f32([3, 2], vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let bt = CpuTensor::from_f32([2, 3], vec![1.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
        let c = run_reference(
            &Matmul {
                trans_a: true,
                trans_b: true,
            },
            &[at, bt],
        );
        assert_eq!(c[0].f32(), [4.0, 5.0, 10.0, 11.0]);
    }

    #[test]
    fn mismatched_inner_sizes_are_named() {
        let err = Matmul {
            trans_a: false,
            trans_b: true,
        }
        .infer(&[&Shape::f32([64, 400]), &Shape::f32([120, 256])])
        .unwrap_err();
        assert!(
            err.to_string().contains("k = 400") && err.to_string().contains("k = 256"),
            "{err}"
        );
    }
}
