//! `CpuTensor`: a tensor in host memory, the CPU interpreter's value and the unit of upload
//! and readback.

use crate::shape::{DType, Shape};
use crate::{Error, Result};

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

    /// An f32 tensor; `data.len()` must equal the product of `dims` (it panics otherwise:
    /// for data from outside the program, use [`CpuTensor::try_from_f32`]).
    pub fn from_f32(dims: impl Into<Vec<usize>>, data: Vec<f32>) -> Self {
        Self::try_from_f32(dims, data).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A u32 tensor; `data.len()` must equal the product of `dims` (it panics otherwise:
    /// for data from outside the program, use [`CpuTensor::try_from_u32`]).
    pub fn from_u32(dims: impl Into<Vec<usize>>, data: Vec<u32>) -> Self {
        Self::try_from_u32(dims, data).unwrap_or_else(|e| panic!("{e}"))
    }

    /// An f32 tensor, or an error naming both sizes when `data.len()` is not the product of
    /// `dims`.
    pub fn try_from_f32(dims: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<Self> {
        let shape = Shape::f32(dims);
        check_len(&shape, data.len())?;
        Ok(CpuTensor {
            shape,
            data: TensorData::F32(data),
        })
    }

    /// A u32 tensor, or an error naming both sizes when `data.len()` is not the product of
    /// `dims`.
    pub fn try_from_u32(dims: impl Into<Vec<usize>>, data: Vec<u32>) -> Result<Self> {
        let shape = Shape::u32(dims);
        check_len(&shape, data.len())?;
        Ok(CpuTensor {
            shape,
            data: TensorData::U32(data),
        })
    }

    /// A 0-d f32 tensor (shape `[]`): a loss, or the gradient that seeds a backward pass.
    pub fn scalar(value: f32) -> Self {
        CpuTensor {
            shape: Shape::scalar(),
            data: TensorData::F32(vec![value]),
        }
    }

    /// The value of a one-element f32 tensor, as PyTorch's `Tensor.item()`; an error for any
    /// other size or dtype.
    pub fn item(&self) -> Result<f32> {
        match &self.data {
            TensorData::F32(v) if v.len() == 1 => Ok(v[0]),
            _ => Err(Error::InvalidArgument(format!(
                "only a one-element f32 tensor has an item, this one is {}",
                self.shape
            ))),
        }
    }

    /// The f32 elements, or an error naming the dtype.
    pub fn try_f32(&self) -> Result<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            TensorData::U32(_) => Err(Error::InvalidArgument(format!(
                "expected an f32 tensor, got {}",
                self.shape
            ))),
        }
    }

    /// The u32 elements, or an error naming the dtype.
    pub fn try_u32(&self) -> Result<&[u32]> {
        match &self.data {
            TensorData::U32(v) => Ok(v),
            TensorData::F32(_) => Err(Error::InvalidArgument(format!(
                "expected a u32 tensor, got {}",
                self.shape
            ))),
        }
    }

    /// The f32 elements. Panics on a u32 tensor (dtypes are checked when the graph is built;
    /// [`CpuTensor::try_f32`] returns an error instead).
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

    /// The u32 elements. Panics on an f32 tensor ([`CpuTensor::try_u32`] returns an error).
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

/// An error unless `len` elements fill `shape`.
fn check_len(shape: &Shape, len: usize) -> Result<()> {
    if shape.numel() == len {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{len} elements do not fill shape {shape} ({} elements)",
            shape.numel()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lengths_and_dtypes_are_errors_that_name_the_shape() {
        let e = CpuTensor::try_from_f32([2, 3], vec![0.0; 5]).unwrap_err();
        assert!(
            e.to_string()
                .contains("5 elements do not fill shape [2, 3]"),
            "{e}"
        );
        let e = CpuTensor::try_from_u32([4], vec![1; 3]).unwrap_err();
        assert!(e.to_string().contains("[4]"), "{e}");
        let labels = CpuTensor::try_from_u32([2], vec![1, 2]).expect("fits");
        assert!(labels.try_f32().is_err());
        assert_eq!(labels.try_u32().expect("u32"), &[1, 2]);
        assert!(labels.item().is_err(), "two u32 elements have no item");
    }

    #[test]
    fn a_scalar_is_zero_dimensional_with_one_item() {
        let s = CpuTensor::scalar(2.5);
        assert!(s.shape.dims.is_empty());
        assert_eq!(s.shape.numel(), 1);
        assert_eq!(s.item().expect("item"), 2.5);
        assert_eq!(s.shape.to_string(), "[]");
    }
}
