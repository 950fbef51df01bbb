//! ReLU and LeakyReLU as one pass forward and one pass backward.
//!
//! Candle builds LeakyReLU as `max(x, slope·x)`, whose backward is a dozen passes over
//! memory (equality masks, divisions for ties, the scaling's own backward, sums into zeroed
//! gradients), and ReLU's backward three. On the CPU these ops compute the same values with
//! the same arithmetic per element, so training gives the same bits, in one pass each.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_data;

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
}
