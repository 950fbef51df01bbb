//! A convolution's bias: one value per channel added to every pixel of that channel.
//!
//! Candle adds it as a broadcast, whose backward sums the output's gradient over the
//! batch and both spatial axes with its generic strided reduction: one thread, several
//! percent of a 32x32 GAN step while the other core waits. Here the forward is one
//! parallel pass and the bias's gradient sums each channel's contiguous planes as batch
//! norm sums them (f64 lanes, a fixed order: results do not depend on scheduling).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::channels::{channel_affine, channel_sum, ncs};
use super::f32_data;

/// `y + b` for `y` `[N, C, H, W]` and `b` `[C]` (`b[c]` added to every pixel of channel
/// `c`), with its gradient: the output's gradient for `y`, its per-channel sums for `b`.
pub fn add_channel_bias(y: &Tensor, b: &Tensor) -> Result<Tensor> {
    y.apply_op2(b, ChannelBias)
}

struct ChannelBias;

/// Per-channel sums of an `[N, C, H, W]` tensor: `[C]`.
struct ChannelSum;

impl CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        "easel-channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, plane) = ncs(l1.dims())?;
        let y = f32_data(s1, l1, "input")?;
        let b = f32_data(s2, l2, "bias")?;
        if b.len() != c {
            candle_core::bail!("easel channel bias: {} values for {c} channels", b.len());
        }
        // y·1 + b is y + b exactly.
        let ab: Vec<(f32, f32)> = b.iter().map(|&b| (1.0, b)).collect();
        let out = channel_affine(&y, (c, plane), &ab);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // A frozen network's bias (read detached) needs no gradient.
        let db = if b.track_op() {
            Some(grad.apply_op1_no_bwd(&ChannelSum)?)
        } else {
            None
        };
        Ok((Some(grad.clone()), db))
    }
}

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "easel-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, plane) = ncs(l.dims())?;
        let g = f32_data(s, l, "gradient")?;
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ch| channel_sum(&g, (n, c, plane), ch, |v| v) as f32)
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn adds_each_channel_and_sums_its_gradient_as_a_broadcast_does() {
        let dev = Device::Cpu;
        for (n, c, h, w) in [(2, 3, 5, 7), (4, 64, 16, 16), (1, 1, 1, 1), (3, 2, 4, 5)] {
            let y = Var::from_tensor(
                &Tensor::arange(0f32, (n * c * h * w) as f32, &dev)
                    .unwrap()
                    .affine(0.01, -1.0)
                    .unwrap()
                    .sin()
                    .unwrap()
                    .reshape((n, c, h, w))
                    .unwrap(),
            )
            .unwrap();
            let b = Var::from_tensor(
                &Tensor::arange(0f32, c as f32, &dev)
                    .unwrap()
                    .affine(0.3, -0.5)
                    .unwrap(),
            )
            .unwrap();
            // A weighting, so that the gradient is not all ones.
            let k = y.as_tensor().cos().unwrap();
            let ours = add_channel_bias(&y, &b).unwrap();
            let theirs = y.broadcast_add(&b.reshape((1, c, 1, 1)).unwrap()).unwrap();
            let diff = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
            let grads = |out: &Tensor| {
                let g = (out * &k).unwrap().sum_all().unwrap().backward().unwrap();
                (
                    g.get(&y)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                    g.get(&b).unwrap().to_vec1::<f32>().unwrap(),
                )
            };
            let (dy, db) = grads(&ours);
            let (dy_ref, db_ref) = grads(&theirs);
            assert_eq!(dy, dy_ref, "{n}x{c}x{h}x{w}");
            for (got, want) in db.iter().zip(&db_ref) {
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{n}x{c}x{h}x{w}: bias gradient {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn refuses_a_bias_of_the_wrong_length() {
        let y = Tensor::zeros((1, 3, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = add_channel_bias(&y, &b).unwrap_err().to_string();
        assert!(err.contains("4 values for 3 channels"), "{err}");
    }
}
