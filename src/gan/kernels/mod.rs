//! easel's CPU kernels as Candle custom ops (f32 tensors), used for training on the CPU
//! ([`enabled`]); other devices, or `EASEL_KERNELS=portable`, take Candle's own ops.
//!
//! - [`conv`]: convolutions (im2col / col2im around GEMMs), forward and backward;
//! - [`packed_gemm`]: those GEMMs with the weight packed once per batch, in f32 (AVX-512F)
//!   or bf16 (`precision: "bf16"`, on AVX512_BF16); elsewhere the `gemm` crate's;
//! - [`strided`]: im2col's and col2im's copies (gathers and masked adds with AVX-512);
//! - [`batch_norm`]: training-mode batch norm, fused into one op forward and one backward;
//! - [`activation`]: ReLU, LeakyReLU and tanh, one pass forward and one backward;
//! - [`bias`]: a convolution's per-channel bias, its gradient as contiguous sums;
//! - [`infer`]: forward-only convolutions with the bias and activation fused (upscaling).
//!
//! Work is spread with rayon; every sum is taken in a fixed order, so results do not
//! depend on scheduling (exact resume relies on that).

mod activation;
mod batch_norm;
mod bias;
mod channels;
mod conv;
mod infer;
mod packed_gemm;
mod strided;
mod winograd;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, Result};

pub use activation::{leaky_relu, tanh, tanh_with_ones};
pub use batch_norm::batch_norm_train;
pub use bias::add_channel_bias;
pub(crate) use conv::out_size;
pub use conv::{
    conv2d, conv2d_weight_grad, conv2d_with, conv_transpose2d, conv_transpose2d_hw,
    conv_transpose2d_with,
};
pub use infer::{fp32_winograd, PackedConv, Precision};

/// 0: not yet read from the environment; 1: easel's kernels on CPU; 2: portable.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether tensors on `device` take easel's CPU kernels. Other devices (CUDA) always take
/// Candle's portable ops; `EASEL_KERNELS=portable` (or [`force_portable`]) sends the CPU
/// there too, so the code path a GPU runs is tested on machines without one.
pub fn enabled(device: &candle_core::Device) -> bool {
    if !device.is_cpu() {
        return false;
    }
    let mode = match MODE.load(Ordering::Relaxed) {
        0 => {
            let portable = std::env::var("EASEL_KERNELS").is_ok_and(|v| v == "portable");
            let m = if portable { 2 } else { 1 };
            MODE.store(m, Ordering::Relaxed);
            m
        }
        m => m,
    };
    mode == 1
}

/// Forces the portable ops on the CPU (or back to easel's kernels) for this process.
pub fn force_portable(portable: bool) {
    MODE.store(if portable { 2 } else { 1 }, Ordering::Relaxed);
}

/// Calls `f` with a CPU tensor's f32 values in row-major order (borrowed where the
/// layout is contiguous), for code outside these ops that reads CPU tensors directly.
pub fn with_f32<R>(t: &candle_core::Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        bail!("expected a tensor on the CPU, got one on {:?}", t.device());
    };
    f(&f32_data(cpu, layout, "tensor")?)
}

/// The f32 values of a storage in the layout's logical (row-major) order.
fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<Cow<'a, [f32]>> {
    let CpuStorage::F32(data) = s else {
        bail!(
            "easel conv kernels support f32 only, the {what} is {:?}",
            s.dtype()
        )
    };
    if let Some((a, b)) = l.contiguous_offsets() {
        return Ok(Cow::Borrowed(&data[a..b]));
    }
    let (dims, strides) = (l.dims(), l.stride());
    let count = l.shape().elem_count();
    let mut out = Vec::with_capacity(count);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..count {
        let off: usize =
            l.start_offset() + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        out.push(data[off]);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Cow::Owned(out))
}
