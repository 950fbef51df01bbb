//! Convolutions composed of Candle's matrix product and copies (pad, narrow, stack,
//! reshape), so that on a GPU the forward pass and both backward passes are cuBLAS
//! products: Candle's own CUDA `conv_transpose2d` is a naive loop per output value, and it
//! is also what Candle's `conv2d` backward runs for the input's gradient. Autograd comes
//! from the ops themselves. Weights in Candle's layouts: `[out, in, k, k]` for a
//! convolution, `[in, out, k, k]` transposed.

use candle_core::{Result, Tensor};

/// `x` padded with `left` zeros at the start of `dim`, then padded or cut at the end to
/// `total` values.
fn fit(x: &Tensor, dim: usize, left: usize, total: usize) -> Result<Tensor> {
    let x = x.pad_with_zeros(dim, left, 0)?;
    let have = x.dim(dim)?;
    if have < total {
        x.pad_with_zeros(dim, 0, total - have)
    } else {
        x.narrow(dim, 0, total)
    }
}

/// `conv2d(x, w, padding, stride)` for `x` `[N, C, H, W]` and a square `k`×`k` kernel.
pub fn conv2d(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (co, _, k, _) = w.dims4()?;
    let s = stride;
    if s == 0 || h + 2 * pad < k || wd + 2 * pad < k {
        candle_core::bail!("conv2d: kernel {k} (stride {s}) does not fit a padded {h}x{wd} input");
    }
    let ho = (h + 2 * pad - k) / s + 1;
    let wo = (wd + 2 * pad - k) / s + 1;
    // Stride s as a phase split: padded row s·i + r is row i of phase r, so tap ky reads
    // rows ky/s .. ky/s + ho of phase ky % s.
    let (hg, wg) = (ho + (k - 1) / s, wo + (k - 1) / s);
    let xp = fit(&fit(x, 2, pad, hg * s)?, 3, pad, wg * s)?.reshape((n, c, hg, s, wg, s))?;
    let mut taps = Vec::with_capacity(k * k);
    for ky in 0..k {
        for kx in 0..k {
            taps.push(
                xp.narrow(3, ky % s, 1)?
                    .narrow(5, kx % s, 1)?
                    .narrow(2, ky / s, ho)?
                    .narrow(4, kx / s, wo)?
                    .squeeze(5)?
                    .squeeze(3)?,
            );
        }
    }
    // [N, C, k·k, ho, wo] → [N, C·k·k, ho·wo]: the order of w's [C, ky, kx].
    let cols = Tensor::stack(&taps, 2)?.reshape((n, c * k * k, ho * wo))?;
    let w2 = w
        .reshape((co, c * k * k))?
        .unsqueeze(0)?
        .broadcast_as((n, co, c * k * k))?;
    w2.matmul(&cols)?.reshape((n, co, ho, wo))
}

/// `conv_transpose2d(x, w, padding, output_padding, stride)` for `x` `[N, C, H, W]`.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    pad: usize,
    out_pad: usize,
    stride: usize,
) -> Result<Tensor> {
    let (n, ci, h, wd) = x.dims4()?;
    let (_, co, k, _) = w.dims4()?;
    let s = stride;
    if s == 0 || h == 0 || wd == 0 || k + out_pad < 2 * pad + 1 {
        candle_core::bail!(
            "conv_transpose2d: kernel {k}, padding {pad}, stride {s} do not fit a {h}x{wd} input"
        );
    }
    let ho = (h - 1) * s + k + out_pad - 2 * pad;
    let wo = (wd - 1) * s + k + out_pad - 2 * pad;
    // Every input value times every tap: [N, co·k·k, H·W].
    let wt = w.reshape((ci, co * k * k))?.t()?;
    let wt = wt.unsqueeze(0)?.broadcast_as((n, co * k * k, ci))?;
    let cols = wt
        .matmul(&x.reshape((n, ci, h * wd))?)?
        .reshape((n, co, k, k, h, wd))?;
    // Tap (ky, kx) of input (y, x) lands on output s·y + ky − pad: in phase ky % s of the
    // output rows, at row y + ky / s of that phase. Each phase sums its taps' shifted
    // copies, then the phases interleave.
    let hg = (ho + pad).div_ceil(s).max(h + (k - 1) / s);
    let wg = (wo + pad).div_ceil(s).max(wd + (k - 1) / s);
    let mut rows = Vec::with_capacity(s);
    for ry in 0..s {
        let mut phases = Vec::with_capacity(s);
        for rx in 0..s {
            let mut sum: Option<Tensor> = None;
            for ky in (ry..k).step_by(s) {
                for kx in (rx..k).step_by(s) {
                    let tap = cols
                        .narrow(2, ky, 1)?
                        .narrow(3, kx, 1)?
                        .squeeze(3)?
                        .squeeze(2)?;
                    let placed = fit(&fit(&tap, 2, ky / s, hg)?, 3, kx / s, wg)?;
                    sum = Some(match sum {
                        Some(acc) => (acc + placed)?,
                        None => placed,
                    });
                }
            }
            let phase = match sum {
                Some(t) => t,
                None => Tensor::zeros((n, co, hg, wg), x.dtype(), x.device())?,
            };
            phases.push(phase);
        }
        rows.push(Tensor::stack(&phases, 4)?); // [N, co, hg, wg, s]
    }
    Tensor::stack(&rows, 3)? // [N, co, hg, s, wg, s]
        .reshape((n, co, hg * s, wg * s))?
        .narrow(2, pad, ho)?
        .narrow(3, pad, wo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}");
        let worst = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(worst < 1e-4, "{what}: differs by {worst}");
    }

    /// Values and both gradients equal Candle's own ops, for the DCGAN's shapes (4x4
    /// stride 2, the 1x1 → 4x4 first layer, the 4x4 last one) and odd kernels.
    #[test]
    fn convolutions_of_matrix_products_equal_candles_own() {
        let dev = Device::Cpu;
        // (transposed, in, out, side, k, stride, pad, out_pad)
        let cases = [
            (false, 3, 5, 8, 4, 2, 1, 0),
            (false, 4, 1, 4, 4, 1, 0, 0),
            (false, 3, 6, 7, 3, 1, 1, 0),
            (false, 2, 3, 9, 3, 2, 1, 0),
            (false, 2, 3, 6, 5, 2, 2, 0),
            (true, 6, 3, 1, 4, 1, 0, 0),
            (true, 5, 3, 4, 4, 2, 1, 0),
            (true, 4, 2, 5, 3, 2, 1, 1),
            (true, 3, 2, 5, 3, 1, 1, 0),
            (true, 2, 3, 3, 5, 2, 2, 1),
        ];
        for (i, &(transposed, cin, cout, side, k, s, p, op)) in cases.iter().enumerate() {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, cin, side, side), &dev).unwrap())
                    .unwrap();
            let shape = if transposed {
                (cin, cout, k, k)
            } else {
                (cout, cin, k, k)
            };
            let w = Var::from_tensor(&Tensor::randn(0f32, 0.3, shape, &dev).unwrap()).unwrap();
            let (ours, theirs) = if transposed {
                (
                    conv_transpose2d(&x, &w, p, op, s).unwrap(),
                    x.conv_transpose2d(&w, p, op, s, 1).unwrap(),
                )
            } else {
                (
                    conv2d(&x, &w, p, s).unwrap(),
                    x.conv2d(&w, p, s, 1, 1).unwrap(),
                )
            };
            close(&ours, &theirs, &format!("case {i}: values"));
            // A weighted sum, so every output value's gradient differs.
            let weights = Tensor::randn(0f32, 1.0, theirs.dims(), &dev).unwrap();
            let g1 = (ours * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (theirs * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (v, name) in [(&x, "input"), (&w, "weight")] {
                close(
                    g1.get(v).unwrap(),
                    g2.get(v).unwrap(),
                    &format!("case {i}: {name} gradient"),
                );
            }
        }
    }
}
