//! `CpuTensor`: a tensor in host memory, the CPU interpreter's value and the unit of upload
//! and readback.

use crate::shape::{DType, Shape};

/// A tensor in host memory: the CPU interpreter's value and the GPU's upload/readback unit.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuTensor {
    /// Shape and dtype.
    pub shape: Shape,
    /// Elements, row-major.
    pub data: TensorData,
}

/// The elements of a [`CpuTensor`].
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// f32 elements.
    F32(Vec<f32>),
    /// u32 elements.
    U32(Vec<u32>),
}

impl CpuTensor {
    /// Zeros of `shape`.
    pub fn zeros(shape: &Shape) -> Self {
        let data = match shape.dtype {
            DType::F32 => TensorData::F32(vec![0.0; shape.numel()]),
            DType::U32 => TensorData::U32(vec![0; shape.numel()]),
        };
        CpuTensor {
            shape: shape.clone(),
            data,
        }
    }

    /// An f32 tensor; `data.len()` must equal the product of `dims`.
    pub fn from_f32(dims: impl Into<Vec<usize>>, data: Vec<f32>) -> Self {
        let shape = Shape::f32(dims);
        assert_eq!(
            shape.numel(),
            data.len(),
            "data length does not match shape {shape}"
        );
        CpuTensor {
            shape,
            data: TensorData::F32(data),
        }
    }

    /// A u32 tensor; `data.len()` must equal the product of `dims`.
    pub fn from_u32(dims: impl Into<Vec<usize>>, data: Vec<u32>) -> Self {
        let shape = Shape::u32(dims);
        assert_eq!(
            shape.numel(),
            data.len(),
            "data length does not match shape {shape}"
        );
        CpuTensor {
            shape,
            data: TensorData::U32(data),
        }
    }

    /// The f32 elements. Panics on a u32 tensor: dtypes are checked when the graph is built.
    pub fn f32(&self) -> &[f32] {
        match &self.data {
            TensorData::F32(v) => v,
            TensorData::U32(_) => panic!("expected an f32 tensor, got {}", self.shape),
        }
    }

    /// The f32 elements, mutable.
    pub fn f32_mut(&mut self) -> &mut [f32] {
        match &mut self.data {
            TensorData::F32(v) => v,
            TensorData::U32(_) => panic!("expected an f32 tensor"),
        }
    }

    /// The u32 elements.
    pub fn u32(&self) -> &[u32] {
        match &self.data {
            TensorData::U32(v) => v,
            TensorData::F32(_) => panic!("expected a u32 tensor, got {}", self.shape),
        }
    }

    /// The u32 elements, mutable.
    pub fn u32_mut(&mut self) -> &mut [u32] {
        match &mut self.data {
            TensorData::U32(v) => v,
            TensorData::F32(_) => panic!("expected a u32 tensor"),
        }
    }

    /// The raw bytes, as uploaded to the GPU.
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::U32(v) => bytemuck::cast_slice(v),
        }
    }

    /// A tensor of `shape` from raw bytes, as read back from the GPU.
    pub fn from_bytes(shape: &Shape, bytes: &[u8]) -> Self {
        let data = match shape.dtype {
            DType::F32 => TensorData::F32(bytemuck::pod_collect_to_vec(bytes)),
            DType::U32 => TensorData::U32(bytemuck::pod_collect_to_vec(bytes)),
        };
        CpuTensor {
            shape: shape.clone(),
            data,
        }
    }
}
