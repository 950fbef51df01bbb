//! ReLU, LeakyReLU and tanh as one pass forward and one pass backward.
//!
//! Candle builds LeakyReLU as `max(x, slope·x)`, whose backward is a dozen passes over
//! memory (equality masks, divisions for ties, the scaling's own backward, sums into zeroed
//! gradients), and ReLU's backward three. On the CPU these ops compute the same values with
//! the same arithmetic per element, so training gives the same bits, in one pass each.
//!
//! Candle's tanh calls libm's `tanhf` per element (through `expm1f`: a fifth of a CPPN-GAN
//! step) and takes four passes backward (`1 − y²` built op by op). [`tanh`] is the CPPN
//! renderer's rational tanh (`cppn::fastmath`, within 1e-6 of libm), vectorised, with the
//! gradient `g·(1 − y²)` in one pass: a trained CPPN generator now draws with the very
//! function it renders with.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_data;
use crate::cppn::fastmath;

/// `max(x, slope·x)` (`slope` in [0, 1)), as `x.maximum(&(x * slope))` computes it and with
/// its gradient; `slope` 0 is ReLU (`x.relu()`).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    x.apply_op1(Activation { slope })
}

struct Activation {
    slope: f64,
}

/// The gradient of [`Activation`] at `x`, given the output's gradient.
struct ActivationGrad {
    slope: f64,
}

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        "easel-leaky-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, "input")?;
        let mut y = vec![0f32; x.len()];
        if self.slope == 0.0 {
            y.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(y, x)| {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = x.max(0.0);
                    }
                });
        } else {
            let slope = self.slope as f32;
            y.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(y, x)| {
                    for (y, &x) in y.iter_mut().zip(x) {
                        // Candle's affine (x·slope + 0) then maximum.
                        *y = x.max(x * slope + 0.0);
                    }
                });
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            x.apply_op2(grad, ActivationGrad { slope: self.slope })?,
        ))
    }
}

impl CustomOp2 for ActivationGrad {
    fn name(&self) -> &'static str {
        "easel-leaky-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, "input")?;
        let g = f32_data(s2, l2, "gradient")?;
        if x.len() != g.len() {
            candle_core::bail!("easel-leaky-relu-grad: {:?} and {:?}", l1.dims(), l2.dims());
        }
        let mut dx = vec![0f32; x.len()];
        let slope = self.slope as f32;
        let relu = self.slope == 0.0;
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .for_each(|(dx, (x, g))| {
                for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                    *dx = if relu {
                        // Candle: 0 + g·(x ≥ 0).
                        0.0 + g * if x >= 0.0 { 1.0 } else { 0.0 }
                    } else {
                        // Candle's maximum backward: each side gets g where it equals the
                        // output, halved on ties; the scaled side goes through the
                        // scaling's backward (·slope + 0); both add into zeros.
                        let r = x * slope + 0.0;
                        let y = x.max(r);
                        let ml = if y == x { 1.0f32 } else { 0.0 };
                        let mr = if y == r { 1.0f32 } else { 0.0 };
                        let lhs = (ml * g) / (mr + 1.0);
                        let rhs = (mr * g) / (ml + 1.0);
                        (0.0 + lhs) + (rhs * slope + 0.0)
                    };
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// tanh of every element (see the module's notes), with its gradient.
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    x.apply_op1(Tanh { ones: false })
}

/// `tanh(x)` with a column of ones after the last dimension (`[…, k]` → `[…, k + 1]`): the
/// next layer's input with its bias folded into the matrix product (the ones meet the
/// bias row), instead of a broadcast add whose backward is a slow column sum.
pub fn tanh_with_ones(x: &Tensor) -> Result<Tensor> {
    x.apply_op1(Tanh { ones: true })
}

struct Tanh {
    ones: bool,
}

/// The gradient of [`Tanh`] from its output `y` and the output's gradient.
struct TanhGrad {
    ones: bool,
}

/// Rows per parallel chunk of the ones-column variants.
fn rows_per_chunk(cols: usize) -> usize {
    (CHUNK / cols.max(1)).max(1)
}

/// `y = tanh(x)` over a chunk, in whatever vectors the function is compiled for.
#[inline(always)]
fn tanh_chunk(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = fastmath::tanh(x);
    }
}

/// `dx = g·(1 − y²)` over a chunk.
#[inline(always)]
fn tanh_grad_chunk(y: &[f32], g: &[f32], dx: &mut [f32]) {
    for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
        *dx = g * (1.0 - y * y);
    }
}

/// The instruction sets the chunks are compiled for, widest first; the CPU's is chosen at
/// run time. No FMA is used (Rust never fuses a·b + c on its own), so all give the same
/// bits and a run resumes exactly on another CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lanes {
    Avx512,
    Avx2,
    Baseline,
}

impl Lanes {
    fn best() -> Lanes {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Lanes::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Lanes::Avx2;
            }
        }
        Lanes::Baseline
    }

    /// Whether this CPU can run them.
    #[cfg(test)]
    fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Lanes::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Lanes::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            _ => matches!(self, Lanes::Baseline),
        }
    }

    fn tanh(self, x: &[f32], y: &mut [f32]) {
        match self {
            // SAFETY (both): `best` found the feature on this CPU.
            #[cfg(target_arch = "x86_64")]
            Lanes::Avx512 => unsafe { x86::tanh_avx512(x, y) },
            #[cfg(target_arch = "x86_64")]
            Lanes::Avx2 => unsafe { x86::tanh_avx2(x, y) },
            _ => tanh_chunk(x, y),
        }
    }

    fn tanh_grad(self, y: &[f32], g: &[f32], dx: &mut [f32]) {
        match self {
            // SAFETY (both): `best` found the feature on this CPU.
            #[cfg(target_arch = "x86_64")]
            Lanes::Avx512 => unsafe { x86::tanh_grad_avx512(y, g, dx) },
            #[cfg(target_arch = "x86_64")]
            Lanes::Avx2 => unsafe { x86::tanh_grad_avx2(y, g, dx) },
            _ => tanh_grad_chunk(y, g, dx),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{tanh_chunk, tanh_grad_chunk};

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tanh_avx512(x: &[f32], y: &mut [f32]) {
        tanh_chunk(x, y)
    }
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tanh_avx2(x: &[f32], y: &mut [f32]) {
        tanh_chunk(x, y)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tanh_grad_avx512(y: &[f32], g: &[f32], dx: &mut [f32]) {
        tanh_grad_chunk(y, g, dx)
    }
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tanh_grad_avx2(y: &[f32], g: &[f32], dx: &mut [f32]) {
        tanh_grad_chunk(y, g, dx)
    }
}

impl CustomOp1 for Tanh {
    fn name(&self) -> &'static str {
        "easel-tanh"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, "input")?;
        let lanes = Lanes::best();
        if !self.ones {
            let mut y = vec![0f32; x.len()];
            y.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(y, x)| lanes.tanh(x, y));
            return Ok((CpuStorage::F32(y), l.shape().clone()));
        }
        let mut dims = l.dims().to_vec();
        let Some(cols) = dims.last_mut() else {
            candle_core::bail!("easel-tanh: a scalar has no column to add");
        };
        let (k, rows) = (*cols, rows_per_chunk(*cols));
        if k == 0 {
            candle_core::bail!("easel-tanh: no columns in {:?}", l.dims());
        }
        *cols += 1;
        let mut y = vec![0f32; x.len() / k * (k + 1)];
        y.par_chunks_mut(rows * (k + 1))
            .zip(x.par_chunks(rows * k))
            .for_each(|(y, x)| {
                for (y, x) in y.chunks_mut(k + 1).zip(x.chunks(k)) {
                    lanes.tanh(x, &mut y[..k]);
                    y[k] = 1.0;
                }
            });
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2(grad, TanhGrad { ones: self.ones })?))
    }
}

impl CustomOp2 for TanhGrad {
    fn name(&self) -> &'static str {
        "easel-tanh-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = f32_data(s1, l1, "output")?;
        let g = f32_data(s2, l2, "gradient")?;
        if l1.dims() != l2.dims() {
            candle_core::bail!("easel-tanh-grad: {:?} and {:?}", l1.dims(), l2.dims());
        }
        let lanes = Lanes::best();
        if !self.ones {
            let mut dx = vec![0f32; y.len()];
            dx.par_chunks_mut(CHUNK)
                .zip(y.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
                .for_each(|(dx, (y, g))| lanes.tanh_grad(y, g, dx));
            return Ok((CpuStorage::F32(dx), l1.shape().clone()));
        }
        // The ones column is a constant: no gradient goes back through it.
        let mut dims = l1.dims().to_vec();
        let k = match dims.last_mut() {
            Some(cols) if *cols > 1 => {
                *cols -= 1;
                *cols
            }
            _ => candle_core::bail!("easel-tanh-grad: no ones column in {:?}", l1.dims()),
        };
        let rows = rows_per_chunk(k + 1);
        let mut dx = vec![0f32; y.len() / (k + 1) * k];
        dx.par_chunks_mut(rows * k)
            .zip(
                y.par_chunks(rows * (k + 1))
                    .zip(g.par_chunks(rows * (k + 1))),
            )
            .for_each(|(dx, (y, g))| {
                for ((dx, y), g) in dx.chunks_mut(k).zip(y.chunks(k + 1)).zip(g.chunks(k + 1)) {
                    lanes.tanh_grad(&y[..k], &g[..k], dx);
                }
            });
        Ok((CpuStorage::F32(dx), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Forward values and the input's gradient are Candle's, bit for bit, zeros included.
    #[test]
    fn the_same_bits_as_candles_ops() {
        let dev = Device::Cpu;
        let mut v: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        v.extend([0.0, -0.0, 1e-30, -1e-30, 3.5, -3.5]);
        let n = v.len();
        let x = Var::from_tensor(&Tensor::from_vec(v, n, &dev).unwrap()).unwrap();
        let w = Tensor::from_vec(
            (0..n)
                .map(|i| ((i * 104729) % 997) as f32 / 500.0 - 1.0)
                .collect::<Vec<_>>(),
            n,
            &dev,
        )
        .unwrap();
        for slope in [0.0, 0.2, 0.3] {
            let theirs = if slope == 0.0 {
                x.relu().unwrap()
            } else {
                x.maximum(&(x.as_tensor() * slope).unwrap()).unwrap()
            };
            let ours = leaky_relu(&x, slope).unwrap();
            let bits = |t: &Tensor| -> Vec<u32> {
                t.to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            };
            assert_eq!(bits(&ours), bits(&theirs), "slope {slope}: forward");
            let g1 = (&ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&theirs * &w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            assert_eq!(
                bits(g1.get(&x).unwrap()),
                bits(g2.get(&x).unwrap()),
                "slope {slope}: gradient"
            );
        }
    }

    /// The largest absolute difference between two equally long value lists.
    fn worst(a: Vec<f32>, b: Vec<f32>) -> f32 {
        a.iter()
            .zip(&b)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    }

    /// Every instruction set this CPU has gives the same bits, within 1e-6 of f64's tanh
    /// (clamped ends included), and the gradient is g·(1 − y²) as Candle's tanh has it.
    #[test]
    fn tanh_matches_libm_on_every_instruction_set() {
        let x: Vec<f32> = (0..40_000)
            .map(|i| (i as f32 - 20_000.0) / 2000.0)
            .chain([0.0, -0.0, 1e-30, 9.0, -9.0, 50.0, -50.0])
            .collect();
        let mut reference = vec![0f32; x.len()];
        Lanes::Baseline.tanh(&x, &mut reference);
        for (&x, &y) in x.iter().zip(&reference) {
            let exact = (x as f64).tanh();
            assert!(
                (y as f64 - exact).abs() < 1e-6,
                "tanh({x}) = {y}, not {exact}"
            );
        }
        let g: Vec<f32> = (0..x.len())
            .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let mut reference_grad = vec![0f32; x.len()];
        Lanes::Baseline.tanh_grad(&reference, &g, &mut reference_grad);
        for lanes in [Lanes::Avx512, Lanes::Avx2]
            .into_iter()
            .filter(|l| l.available())
        {
            let mut y = vec![0f32; x.len()];
            lanes.tanh(&x, &mut y);
            assert!(
                y == reference,
                "{lanes:?}: forward differs from the baseline"
            );
            let mut dx = vec![0f32; x.len()];
            lanes.tanh_grad(&y, &g, &mut dx);
            assert!(
                dx == reference_grad,
                "{lanes:?}: gradient differs from the baseline"
            );
        }

        // Through autograd, against Candle's own tanh.
        let dev = Device::Cpu;
        let n = 5000;
        let xs =
            Var::from_tensor(&Tensor::from_vec(x[17_500..17_500 + n].to_vec(), n, &dev).unwrap())
                .unwrap();
        let w = Tensor::from_vec(g[..n].to_vec(), n, &dev).unwrap();
        let ours = tanh(&xs).unwrap();
        let theirs = xs.tanh().unwrap();
        let grad = |y: &Tensor| {
            let grads = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            grads.get(&xs).unwrap().to_vec1::<f32>().unwrap()
        };
        assert!(worst(ours.to_vec1().unwrap(), theirs.to_vec1().unwrap()) < 1e-6);
        assert!(worst(grad(&ours), grad(&theirs)) < 2e-6);
    }

    /// `tanh_with_ones` is `cat([tanh(x), 1], last)` forward and backward.
    #[test]
    fn tanh_with_ones_is_tanh_then_a_column_of_ones() {
        let dev = Device::Cpu;
        let values: Vec<f32> = (0..60).map(|i| (i as f32 - 30.0) / 7.0).collect();
        let x = Var::from_tensor(&Tensor::from_vec(values, (3, 4, 5), &dev).unwrap()).unwrap();
        let w: Vec<f32> = (0..72)
            .map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0)
            .collect();
        let w = Tensor::from_vec(w, (3, 4, 6), &dev).unwrap();
        let ours = tanh_with_ones(&x).unwrap();
        let ones = Tensor::ones((3, 4, 1), candle_core::DType::F32, &dev).unwrap();
        let theirs = Tensor::cat(&[&x.tanh().unwrap(), &ones], 2).unwrap();
        assert_eq!(ours.dims(), &[3, 4, 6]);
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(worst(flat(&ours), flat(&theirs)) < 1e-6);
        let grad = |y: &Tensor| {
            let grads = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            flat(grads.get(&x).unwrap())
        };
        assert!(worst(grad(&ours), grad(&theirs)) < 2e-6);
    }
}
