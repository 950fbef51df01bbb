//! Generator and discriminator for DCGAN, conditional DCGAN and CAN, built from a
//! [`GanSpec`]. Parameters are created on a first (evaluation) pass over a dummy batch,
//! then initialised from the seed.

use candle_core::{Device, Result, Tensor, D};

use super::layers::{self, Ctx, Params};
use super::{Condition, GanSpec, ModelKind};

pub struct Generator {
    pub spec: GanSpec,
    pub classes: usize,
    pub params: Params,
}

pub struct Discriminator {
    pub spec: GanSpec,
    pub classes: usize,
    pub params: Params,
}

/// One-hot rows for `labels`, `[N, classes]`.
pub fn one_hot(labels: &[usize], classes: usize, device: &Device) -> Result<Tensor> {
    let idx: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let idx = Tensor::from_vec(idx, labels.len(), device)?;
    candle_nn::encoding::one_hot(idx, classes, 1f32, 0f32)
}

impl Generator {
    /// `classes` is the number of labels (used by cdcgan's conditioning; 0 otherwise).
    pub fn new(spec: &GanSpec, classes: usize, device: &Device, seed: u64) -> Result<Self> {
        let mut g = Generator {
            spec: spec.clone(),
            classes,
            params: Params::new(device),
        };
        let z = Tensor::zeros((2, spec.latent), candle_core::DType::F32, device)?;
        g.forward(
            &z,
            &[0, 0],
            &Ctx {
                train: false,
                dropout_seed: 0,
            },
        )?;
        g.params.initialise(seed)?;
        Ok(g)
    }

    pub fn conditional(&self) -> bool {
        self.spec.model == ModelKind::Cdcgan && self.classes > 0
    }

    /// Noise `[N, latent]` (and labels, for cdcgan) to images `[N, C, S, S]` in [−1, 1].
    pub fn forward(&mut self, z: &Tensor, labels: &[usize], ctx: &Ctx) -> Result<Tensor> {
        let s = self.spec.clone();
        let p = &mut self.params;
        let mut x = if s.model == ModelKind::Cdcgan && self.classes > 0 {
            Tensor::cat(&[z, &one_hot(labels, self.classes, z.device())?], 1)?
        } else {
            z.clone()
        };
        let norm = s.g_norm;
        let act = s.g_activation;
        let widths = &s.g_widths;
        let use_bias = norm == layers::Norm::None;
        x = layers::linear(p, "g.project", &x, widths[0] * s.start * s.start, use_bias)?;
        x = layers::norm(p, "g.project.norm", &x, norm, ctx)?;
        x = act
            .apply(&x)?
            .reshape((z.dim(0)?, widths[0], s.start, s.start))?;
        // The last `upsamples` layers double the size; any before them keep it (as the
        // py-truchet-gan generator's first 5x5 layer does).
        let layers_n = widths.len();
        let first_up = layers_n - s.upsamples();
        for k in 0..layers_n {
            let last = k + 1 == layers_n;
            let out = if last { s.channels } else { widths[k + 1] };
            let name = format!("g.up{k}");
            let stride = if k >= first_up { 2 } else { 1 };
            let bias = last || use_bias;
            x = if stride == 2 && s.upsample == super::Upsample::Nearest {
                layers::upsample_conv(p, &name, &x, out, s.kernel, bias)?
            } else if stride == 1 {
                layers::conv(p, &name, &x, out, s.kernel | 1, 1, bias)?
            } else {
                layers::conv_up(p, &name, &x, out, s.kernel, stride, bias)?
            };
            if !last {
                x = layers::norm(p, &format!("{name}.norm"), &x, norm, ctx)?;
                x = act.apply(&x)?;
            }
        }
        x.tanh()
    }
}

/// What the discriminator says about a batch.
pub struct Judgement {
    /// Real/fake logits `[N]`.
    pub logits: Tensor,
    /// CAN: style (class) logits `[N, K]`.
    pub style: Option<Tensor>,
}

impl Discriminator {
    pub fn new(spec: &GanSpec, classes: usize, device: &Device, seed: u64) -> Result<Self> {
        let mut d = Discriminator {
            spec: spec.clone(),
            classes,
            params: Params::new(device),
        };
        d.params.spectral = spec.spectral_norm;
        let s = spec.image_size;
        let x = Tensor::zeros((2, spec.channels, s, s), candle_core::DType::F32, device)?;
        d.forward(
            &x,
            &[0, 0],
            &Ctx {
                train: false,
                dropout_seed: 0,
            },
        )?;
        d.params.initialise(seed)?;
        Ok(d)
    }

    pub fn forward(&mut self, images: &Tensor, labels: &[usize], ctx: &Ctx) -> Result<Judgement> {
        let s = self.spec.clone();
        let p = &mut self.params;
        let (n, _, h, w) = images.dims4()?;
        let conditional = s.model == ModelKind::Cdcgan && self.classes > 0;
        let mut x = if conditional && s.d_condition == Condition::Concat {
            // The label as extra constant image planes.
            let planes = one_hot(labels, self.classes, images.device())?
                .reshape((n, self.classes, 1, 1))?
                .broadcast_as((n, self.classes, h, w))?
                .contiguous()?;
            Tensor::cat(&[images, &planes], 1)?
        } else {
            images.clone()
        };
        let norm = s.d_norm;
        let act = s.d_activation;
        for (k, &width) in s.d_widths.iter().enumerate() {
            let name = format!("d.down{k}");
            // DCGAN: no normalisation on the first layer.
            let this_norm = if k == 0 { layers::Norm::None } else { norm };
            x = layers::conv(
                p,
                &name,
                &x,
                width,
                s.kernel,
                2,
                this_norm == layers::Norm::None,
            )?;
            x = layers::norm(p, &format!("{name}.norm"), &x, this_norm, ctx)?;
            x = act.apply(&x)?;
            x = layers::dropout(&name, &x, s.dropout, ctx)?;
        }
        if s.minibatch_std {
            x = minibatch_std(&x)?;
        }
        let flat = x.flatten_from(1)?;
        let mut logits = layers::linear(p, "d.real", &flat, 1, true)?.squeeze(D::Minus1)?;
        if conditional && s.d_condition == Condition::Projection {
            // ⟨embed(y), φ(x)⟩: the label asks "is this a real image *of this class*".
            let features = flat.dim(1)?;
            let embed = p.var("d.embed.w", &[self.classes, features])?;
            let e = one_hot(labels, self.classes, images.device())?.matmul(&embed)?;
            logits = (logits + (e * &flat)?.sum(D::Minus1)?)?;
        }
        let style = if s.model == ModelKind::Can && self.classes > 0 {
            Some(layers::linear(p, "d.style", &flat, self.classes, true)?)
        } else {
            None
        };
        Ok(Judgement { logits, style })
    }
}

/// Appends one feature map holding the batch's mean standard deviation (over images, of
/// each feature), as ProGAN's D does with one group: a batch of near-copies shows up as a
/// low value D can learn to call fake.
pub fn minibatch_std(x: &Tensor) -> Result<Tensor> {
    let (n, _, h, w) = x.dims4()?;
    let centred = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    let std = (centred.sqr()?.mean_keepdim(0)? + 1e-8)?.sqrt()?;
    let plane = std
        .mean_all()?
        .reshape((1, 1, 1, 1))?
        .broadcast_as((n, 1, h, w))?
        .contiguous()?;
    Tensor::cat(&[x, &plane], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minibatch_std_is_near_zero_for_copies_and_grows_with_spread() {
        let one = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 2, 2))
            .unwrap();
        let copies = Tensor::cat(&[&one, &one, &one], 0).unwrap();
        let out = minibatch_std(&copies).unwrap();
        assert_eq!(out.dims(), &[3, 3, 2, 2]);
        let plane: Vec<f32> = out
            .narrow(1, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(plane.iter().all(|&v| v < 1e-3), "{plane:?}");
        // Images 0, 2 and 4 everywhere: std 1.633 (population) at every feature.
        let spread = Tensor::cat(
            &[
                &(&one * 0.0).unwrap(),
                &((&one * 0.0).unwrap() + 2.0).unwrap(),
                &((&one * 0.0).unwrap() + 4.0).unwrap(),
            ],
            0,
        )
        .unwrap();
        let v: Vec<f32> = minibatch_std(&spread)
            .unwrap()
            .narrow(1, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(v.iter().all(|&x| (x - 1.633).abs() < 1e-3), "{v:?}");
    }
}
