//! Training-mode batch norm as one fused Candle op forward and one backward.

use std::borrow::Cow;

use candle_core::{bail, CpuStorage, Layout, Result, Shape, Tensor};

use rayon::prelude::*;

use super::channels::{channel_affine, channel_sum, lane_sum, ncs};
use super::f32_data;

/// Training-mode batch norm over `x [N, C, ...]`: per channel, normalise with the batch's
/// mean and (biased) variance over N and the trailing dims, then scale by `gamma [C]`
/// and shift by `beta [C]`. One fused op forward and one backward, in place of Candle's
/// single-threaded strided reductions (forward and in the backward of every broadcast).
/// Returns the output and the batch's mean and variance (`[C]`, no gradient) for the
/// running statistics.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let y = x.apply_op3(gamma, beta, BatchNorm { eps })?;
    let stats = x.apply_op1_no_bwd(&ChannelStats)?;
    Ok((y, stats.get(0)?, stats.get(1)?))
}

struct BatchNorm {
    eps: f64,
}

/// Per-channel mean and variance of `x [N, C, S]` (two passes, f64 sums, fixed order).
fn channel_stats(x: &[f32], (n, c, s): (usize, usize, usize)) -> Vec<(f64, f64)> {
    let count = (n * s).max(1) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mean = channel_sum(x, (n, c, s), ch, |v| v) / count;
            let sq = channel_sum(x, (n, c, s), ch, |v| (v - mean) * (v - mean));
            (mean, sq / count)
        })
        .collect()
}

fn vector<'a>(s: &'a CpuStorage, l: &Layout, c: usize, what: &str) -> Result<Cow<'a, [f32]>> {
    if l.shape().elem_count() != c {
        bail!(
            "easel batch norm: {what} has shape {:?}, expected [{c}]",
            l.dims()
        );
    }
    f32_data(s, l, what)
}

impl candle_core::CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        "easel-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, s) = ncs(l1.dims())?;
        let x = f32_data(s1, l1, "input")?;
        let gamma = vector(s2, l2, c, "gamma")?;
        let beta = vector(s3, l3, c, "beta")?;
        let stats = channel_stats(&x, (n, c, s));
        // Per channel: y = x·a + b.
        let ab: Vec<(f32, f32)> = stats
            .iter()
            .zip(gamma.iter().zip(beta.iter()))
            .map(|(&(mean, var), (&g, &b))| {
                let a = g as f64 / (var + self.eps).sqrt();
                (a as f32, (b as f64 - mean * a) as f32)
            })
            .collect();
        let y = channel_affine(&x, (c, s), &ab);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, s) = ncs(x.dims())?;
        let len = n * c * s;
        let all = x.apply_op3_no_bwd(gamma, grad, &BatchNormGrad { eps: self.eps })?;
        let dx = all.narrow(0, 0, len)?.reshape(x.shape())?;
        let dgamma = all.narrow(0, len, c)?.reshape(gamma.shape())?;
        let dbeta = all.narrow(0, len + c, c)?.reshape(gamma.shape())?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// The gradients of [`BatchNorm`], packed as `[dx (N·C·S), dgamma (C), dbeta (C)]`.
struct BatchNormGrad {
    eps: f64,
}

impl candle_core::CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "easel-batch-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, s) = ncs(l1.dims())?;
        if l3.dims() != l1.dims() {
            bail!(
                "easel batch norm: gradient {:?} for input {:?}",
                l3.dims(),
                l1.dims()
            );
        }
        let x = f32_data(s1, l1, "input")?;
        let gamma = vector(s2, l2, c, "gamma")?;
        let dy = f32_data(s3, l3, "output gradient")?;
        let stats = channel_stats(&x, (n, c, s));
        let count = (n * s).max(1) as f64;
        // Per channel: Σdy, Σdy·x̂ (f64, fixed order).
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mean, var) = stats[ch];
                let inv = 1.0 / (var + self.eps).sqrt();
                let (mut sd, mut sdx) = (0f64, 0f64);
                for i in 0..n {
                    let at = (i * c + ch) * s;
                    let (g, v) = (&dy[at..at + s], &x[at..at + s]);
                    sd += lane_sum(g, v, |g, _| g);
                    sdx += lane_sum(g, v, |g, v| g * (v - mean) * inv);
                }
                (sd, sdx)
            })
            .collect();
        let len = n * c * s;
        let mut out = vec![0f32; len + 2 * c];
        let (dx, rest) = out.split_at_mut(len);
        // dx = γ/σ · (dy − Σdy/M − x̂·Σdy·x̂/M), per channel as dy·a + x·b + d.
        let coef: Vec<(f32, f32, f32)> = (0..c)
            .map(|ch| {
                let (mean, var) = stats[ch];
                let inv = 1.0 / (var + self.eps).sqrt();
                let (sd, sdx) = sums[ch];
                let a = gamma[ch] as f64 * inv;
                let b = -a * inv * sdx / count;
                let d = -a * sd / count - b * mean;
                (a as f32, b as f32, d as f32)
            })
            .collect();
        if s > 0 {
            dx.par_chunks_mut(s).enumerate().for_each(|(i, o)| {
                let (a, b, d) = coef[i % c];
                let at = i * s;
                for ((o, &g), &v) in o.iter_mut().zip(&dy[at..at + s]).zip(&x[at..at + s]) {
                    *o = g * a + v * b + d;
                }
            });
        }
        for ch in 0..c {
            rest[ch] = sums[ch].1 as f32;
            rest[c + ch] = sums[ch].0 as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(len + 2 * c)))
    }
}

/// Per-channel `[mean; var]` (`[2, C]`) of `[N, C, ...]`, without gradient.
struct ChannelStats;

impl candle_core::CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "easel-channel-stats"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, s) = ncs(l1.dims())?;
        let x = f32_data(s1, l1, "input")?;
        let stats = channel_stats(&x, (n, c, s));
        let mut out: Vec<f32> = stats.iter().map(|&(m, _)| m as f32).collect();
        out.extend(stats.iter().map(|&(_, v)| v as f32));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}
