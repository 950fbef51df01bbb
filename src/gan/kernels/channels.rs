//! Per-channel passes over `[N, C, ...]` tensors, shared by batch norm and the bias:
//! sums in a fixed order (the same on every machine and run) and a per-channel affine map.

use candle_core::{bail, Result};
use rayon::prelude::*;

/// `(N, C, S)` of `[N, C, ...]` dims: S the values of one channel of one item.
pub(super) fn ncs(dims: &[usize]) -> Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        bail!("easel kernels need [N, C, ...], got {dims:?}");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Σ f(x) over channel `ch` of `x` `[N, C, S]`, item after item ([`lane_sum`] each).
pub(super) fn channel_sum(
    x: &[f32],
    (n, c, s): (usize, usize, usize),
    ch: usize,
    f: impl Fn(f64) -> f64 + Copy,
) -> f64 {
    (0..n)
        .map(|i| {
            let block = &x[(i * c + ch) * s..(i * c + ch + 1) * s];
            lane_sum(block, block, |v, _| f(v))
        })
        .sum()
}

/// Σ f(a[j], b[j]) in f64 over two slices of one length, in a fixed order that
/// vectorises: eight running sums over the lanes j mod 8, added pairwise at the end, then
/// the remainder in turn. One running sum (a chain of dependent adds) ran at one value
/// per add latency; the order is still the same on every machine and every run.
#[inline]
pub(super) fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += f(xa[k] as f64, xb[k] as f64);
        }
    }
    let mut total =
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&va, &vb) in ra.iter().zip(rb) {
        total += f(va as f64, vb as f64);
    }
    total
}

/// `x·a + b` with `(a, b)` = `ab[c]` for every value of channel `c` of `x` `[N, C, S]`.
pub(super) fn channel_affine(x: &[f32], (c, s): (usize, usize), ab: &[(f32, f32)]) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    if s > 0 {
        y.par_chunks_mut(s)
            .zip(x.par_chunks(s))
            .enumerate()
            .for_each(|(i, (yo, xi))| {
                let (a, b) = ab[i % c];
                for (o, &v) in yo.iter_mut().zip(xi) {
                    *o = v * a + b;
                }
            });
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around the lane count: the lane sums add every value once.
    #[test]
    fn lane_sums_add_every_value() {
        for len in 0..40 {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 4.0).collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let got = lane_sum(&a, &b, |x, y| x * y);
            assert!(
                (got - want).abs() < 1e-12 * (1.0 + want.abs()),
                "{len}: {got} vs {want}"
            );
        }
    }
}
