//! Bicubic resampling as PyTorch's `interpolate(mode="bicubic", align_corners=False)` and
//! ncnn's Interp (type 3) do it: Keys' cubic with a = −0.75, half-pixel centres, samples
//! past an edge taken from the edge. Used inside networks (the x2 / x3 ncnn variants end
//! with one) and for alpha channels.

use candle_core::{Device, Result, Tensor};

/// Keys' cubic convolution weights for the four samples around a point `t` ∈ [0, 1)
/// past the second of them.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// For each output position along an axis of `n_in` samples: the first of four source
/// indices (before clamping) and their weights.
fn taps(n_in: usize, n_out: usize) -> Vec<(isize, [f32; 4])> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|d| {
            let src = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let base = src.floor();
            (base as isize - 1, cubic_weights(src - base))
        })
        .collect()
}

fn clamp(i: isize, n: usize) -> usize {
    i.clamp(0, n as isize - 1) as usize
}

/// Resamples each `h`×`w` plane of `planes` to `ho`×`wo`.
pub fn bicubic(planes: &[f32], h: usize, w: usize, ho: usize, wo: usize) -> Vec<f32> {
    let count = planes.len() / (h * w).max(1);
    let (tx, ty) = (taps(w, wo), taps(h, ho));
    let mut out = vec![0f32; count * ho * wo];
    let mut rows = vec![0f32; h * wo];
    for (src, dst) in planes
        .chunks_exact(h * w)
        .zip(out.chunks_exact_mut(ho * wo))
    {
        // Along x first, every source row; then along y.
        for (r, row) in src.chunks_exact(w).zip(rows.chunks_exact_mut(wo)) {
            for (o, &(x0, k)) in row.iter_mut().zip(&tx) {
                *o = (0..4).map(|j| k[j] * r[clamp(x0 + j as isize, w)]).sum();
            }
        }
        for (y, &(y0, k)) in ty.iter().enumerate() {
            let line = &mut dst[y * wo..(y + 1) * wo];
            for (j, &kj) in k.iter().enumerate() {
                let r = clamp(y0 + j as isize, h);
                for (o, v) in line.iter_mut().zip(&rows[r * wo..(r + 1) * wo]) {
                    *o += kj * v;
                }
            }
        }
    }
    out
}

/// [`bicubic`] on a `[N, C, H, W]` tensor, to `floor(H·s)`×`floor(W·s)` (computed on the
/// CPU; it only ends a network).
pub(crate) fn bicubic_tensor(x: &Tensor, s: f32) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let ho = ((h as f64) * f64::from(s)).floor().max(1.0) as usize;
    let wo = ((w as f64) * f64::from(s)).floor().max(1.0) as usize;
    let data = x
        .flatten_all()?
        .to_device(&Device::Cpu)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    let out = bicubic(&data, h, w, ho, wo);
    Tensor::from_vec(out, (n, c, ho, wo), x.device())?.to_dtype(x.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_interpolate_samples() {
        for t in [0.0, 0.25, 0.5, 0.9] {
            let k = cubic_weights(t);
            assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{k:?}");
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }

    /// Halving a picture with a linear ramp keeps the ramp (cubic weights reproduce
    /// straight lines) except next to the clamped edges.
    #[test]
    fn halving_keeps_a_ramp() {
        let (h, w) = (4, 16);
        let plane: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        let out = bicubic(&plane, h, w, 2, 8);
        for (x, v) in out.iter().enumerate().take(7).skip(1) {
            assert!((v - (2.0 * x as f32 + 0.5)).abs() < 1e-4, "{x}: {v}");
        }
    }
}
