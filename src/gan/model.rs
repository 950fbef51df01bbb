//! Generator and discriminator for DCGAN, conditional DCGAN, CAN and CPPN-GAN, built from a
//! [`GanSpec`]: every layer and parameter is made in the constructor and initialised from
//! the seed; `forward` only reads them (and updates running statistics).

use candle_core::{Device, Result, Tensor, D};

use super::cppn_generator::CppnBody;
use super::layers::{self, Conv, Ctx, Linear, NormLayer, Params};
use super::{Condition, GCondition, GanSpec, ModelKind, Upsample};

/// One generator stage: a convolution, then (except the last) norm and activation.
struct Stage {
    conv: Conv,
    norm: Option<NormLayer>,
    /// `g_condition: "norm"`: per-class scale and shift of the normalised channels.
    class_affine: Option<ClassAffine>,
}

/// Per-class changes to a norm layer's γ and β, `[K, C]` each, starting near zero.
struct ClassAffine {
    gamma: Tensor,
    beta: Tensor,
}

impl ClassAffine {
    /// `x · (1 + Δγ[y]) + Δβ[y]` for each image's label y (`one_hot`: `[N, K]`).
    fn forward(&self, x: &Tensor, one_hot: &Tensor) -> Result<Tensor> {
        let (n, c) = (x.dim(0)?, x.dim(1)?);
        let scale = (one_hot.matmul(&self.gamma)? + 1.0)?.reshape((n, c, 1, 1))?;
        let shift = one_hot.matmul(&self.beta)?.reshape((n, c, 1, 1))?;
        x.broadcast_mul(&scale)?.broadcast_add(&shift)
    }
}

pub struct Generator {
    pub spec: GanSpec,
    pub classes: usize,
    pub params: Params,
    body: Body,
}

enum Body {
    /// DCGAN's: a projection to a small feature map, then (transposed) convolutions.
    Conv {
        project: Linear,
        project_norm: NormLayer,
        stages: Vec<Stage>,
    },
    /// A coordinate MLP per pixel (`model: "cppn"`).
    Cppn(CppnBody),
}

/// One discriminator stage: a stride-2 convolution, norm, activation, dropout.
struct DownStage {
    name: String,
    conv: Conv,
    norm: NormLayer,
}

pub struct Discriminator {
    pub spec: GanSpec,
    pub classes: usize,
    pub params: Params,
    stages: Vec<DownStage>,
    real: Linear,
    /// CAN: the style (class) head.
    style: Option<Linear>,
    /// Projection conditioning: one embedding row per class, `[K, features]`.
    embed: Option<Tensor>,
}

/// Buffer names of the fitted latent prior (see [`Generator::prior`]).
pub const PRIOR_SHIFT: &str = "prior.shift";
pub const PRIOR_MIX: &str = "prior.mix";

/// Whether a model of `spec` with `classes` labels is given the label (cdcgan only).
fn takes_labels(spec: &GanSpec, classes: usize) -> bool {
    spec.model == ModelKind::Cdcgan && classes > 0
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
        let s = spec;
        let mut p = Params::new(device);
        p.set_precision(spec.precision);
        if s.model == ModelKind::Cppn {
            let body = CppnBody::new(&mut p, s, &s.cppn.clone().unwrap_or_default())?;
            p.initialise(seed)?;
            CppnBody::initialise(&p, seed)?;
            return Ok(Generator {
                spec: spec.clone(),
                classes,
                params: p,
                body: Body::Cppn(body),
            });
        }
        let conditional = takes_labels(s, classes);
        let widths = &s.g_widths;
        let use_bias = s.g_norm == layers::Norm::None;
        let inputs = s.latent + if conditional { classes } else { 0 };
        let projected = widths[0] * s.start * s.start;
        let project = Linear::new(&mut p, "g.project", inputs, projected, use_bias)?;
        let project_norm = NormLayer::new(&mut p, "g.project.norm", projected, s.g_norm)?;
        // The last `upsamples` stages double the size; any before them keep it (as the
        // py-truchet-gan generator's first 5x5 layer does).
        let n = widths.len();
        let first_up = n - s.upsamples();
        let mut stages = vec![];
        for k in 0..n {
            let last = k + 1 == n;
            let io = (widths[k], if last { s.channels } else { widths[k + 1] });
            let name = format!("g.up{k}");
            let bias = last || use_bias;
            let conv = if k < first_up {
                Conv::new(&mut p, &name, io, s.kernel | 1, 1, bias)?
            } else if s.upsample == Upsample::Nearest {
                Conv::nearest_up(&mut p, &name, io, s.kernel, bias)?
            } else {
                Conv::transposed(&mut p, &name, io, s.kernel, 2, bias)?
            };
            let norm = (!last)
                .then(|| NormLayer::new(&mut p, &format!("{name}.norm"), io.1, s.g_norm))
                .transpose()?;
            let class_affine = (!last && conditional && s.g_condition == GCondition::Norm)
                .then(|| -> Result<ClassAffine> {
                    Ok(ClassAffine {
                        gamma: p.var(&format!("{name}.norm.class_gamma"), &[classes, io.1])?,
                        beta: p.var(&format!("{name}.norm.class_beta"), &[classes, io.1])?,
                    })
                })
                .transpose()?;
            stages.push(Stage {
                conv,
                norm,
                class_affine,
            });
        }
        p.initialise(seed)?;
        Ok(Generator {
            spec: spec.clone(),
            classes,
            params: p,
            body: Body::Conv {
                project,
                project_norm,
                stages,
            },
        })
    }

    /// The CPPN body of a `model: "cppn"` generator.
    pub fn cppn(&self) -> Option<&CppnBody> {
        match &self.body {
            Body::Cppn(c) => Some(c),
            Body::Conv { .. } => None,
        }
    }

    pub fn conditional(&self) -> bool {
        takes_labels(&self.spec, self.classes)
    }

    /// Noise `[N, latent]` (and labels, for cdcgan) to images `[N, C, S, S]` in [−1, 1]:
    /// the noise through the fitted prior (see [`Generator::prior`]), then G.
    pub fn forward(&self, z: &Tensor, labels: &[usize], ctx: &Ctx) -> Result<Tensor> {
        self.draw(&self.prior(z)?, labels, ctx)
    }

    /// A VAE-GAN's noise N(0, I) mapped to where its encoder puts the data: the Gaussian
    /// fitted to the encoder's codes of the training images (`shift + z · mix`, stored as
    /// the buffers `prior.shift` and `prior.mix`, so generator files carry it). The KL
    /// term alone leaves the codes only roughly N(0, I), and noise that lands between
    /// them draws blurs (Ghosh et al. 2020's ex-post density estimation). Without a
    /// fitted prior, the noise itself.
    pub fn prior(&self, z: &Tensor) -> Result<Tensor> {
        match (
            self.params.buffer(PRIOR_SHIFT),
            self.params.buffer(PRIOR_MIX),
        ) {
            (Some(shift), Some(mix)) => z.matmul(&mix)?.broadcast_add(&shift),
            _ => Ok(z.clone()),
        }
    }

    /// Codes in G's own latent space (the noise after [`Generator::prior`], or an
    /// encoder's draw) to images.
    pub fn draw(&self, z: &Tensor, labels: &[usize], ctx: &Ctx) -> Result<Tensor> {
        let (s, p) = (&self.spec, &self.params);
        let (project, project_norm, stages) = match &self.body {
            Body::Cppn(c) => return c.forward(p, z, ctx),
            Body::Conv {
                project,
                project_norm,
                stages,
            } => (project, project_norm, stages),
        };
        let labels_hot = self
            .conditional()
            .then(|| one_hot(labels, self.classes, z.device()))
            .transpose()?;
        let x = match &labels_hot {
            Some(hot) => Tensor::cat(&[z, hot], 1)?,
            None => z.clone(),
        };
        let x = project.forward(p, &x)?;
        let x = project_norm.forward(p, &x, ctx)?;
        let mut x =
            s.g_activation
                .apply(&x)?
                .reshape((z.dim(0)?, s.g_widths[0], s.start, s.start))?;
        for stage in stages {
            x = stage.conv.forward(p, &x)?;
            if let Some(norm) = &stage.norm {
                x = norm.forward(p, &x, ctx)?;
                if let (Some(affine), Some(hot)) = (&stage.class_affine, &labels_hot) {
                    x = affine.forward(&x, hot)?;
                }
                x = s.g_activation.apply(&x)?;
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
        let s = spec;
        let mut p = Params::new(device);
        p.set_precision(spec.precision);
        p.spectral = s.spectral_norm;
        let conditional = takes_labels(s, classes);
        let label_planes = conditional && s.d_condition == Condition::Concat;
        let channels = s.channels + if label_planes { classes } else { 0 };
        let (stages, channels, side) = down_stages(&mut p, s, "d", channels)?;
        let features = (channels + usize::from(s.minibatch_std)) * side * side;
        let real = Linear::new(&mut p, "d.real", features, 1, true)?;
        let style = (s.model == ModelKind::Can && classes > 0)
            .then(|| Linear::new(&mut p, "d.style", features, classes, true))
            .transpose()?;
        let embed = (conditional && s.d_condition == Condition::Projection)
            .then(|| p.var("d.embed.w", &[classes, features]))
            .transpose()?;
        p.initialise(seed)?;
        Ok(Discriminator {
            spec: spec.clone(),
            classes,
            params: p,
            stages,
            real,
            style,
            embed,
        })
    }

    pub fn forward(&self, images: &Tensor, labels: &[usize], ctx: &Ctx) -> Result<Judgement> {
        let (s, p) = (&self.spec, &self.params);
        let (n, _, h, w) = images.dims4()?;
        let conditional = takes_labels(s, self.classes);
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
        for stage in &self.stages {
            x = stage.conv.forward(p, &x)?;
            x = stage.norm.forward(p, &x, ctx)?;
            x = s.d_activation.apply(&x)?;
            x = layers::dropout(&stage.name, &x, s.dropout, ctx)?;
        }
        if s.minibatch_std {
            // Per class when D knows the labels: one collapsed class hardly moves the
            // whole batch's spread.
            x = if conditional {
                class_std(&x, &one_hot(labels, self.classes, images.device())?)?
            } else {
                minibatch_std(&x)?
            };
        }
        let flat = x.flatten_from(1)?;
        let mut logits = self.real.forward(p, &flat)?.squeeze(D::Minus1)?;
        if let Some(embed) = &self.embed {
            // ⟨embed(y), φ(x)⟩: the label asks "is this a real image *of this class*".
            let e = one_hot(labels, self.classes, images.device())?.matmul(&p.read(embed))?;
            logits = (logits + (e * &flat)?.sum(D::Minus1)?)?;
        }
        let style = match &self.style {
            Some(head) => Some(head.forward(p, &flat)?),
            None => None,
        };
        Ok(Judgement { logits, style })
    }
}

/// The stride-2 convolution stack of `d_widths` (D's, and the VAE encoder's), layers
/// named `{prefix}.down{k}`: returns the stages, the channels and side they end at.
fn down_stages(
    p: &mut Params,
    s: &GanSpec,
    prefix: &str,
    mut channels: usize,
) -> Result<(Vec<DownStage>, usize, usize)> {
    let mut side = s.image_size;
    let mut stages = vec![];
    for (k, &width) in s.d_widths.iter().enumerate() {
        let name = format!("{prefix}.down{k}");
        // DCGAN: no normalisation on the first layer.
        let norm = if k == 0 { layers::Norm::None } else { s.d_norm };
        let bias = norm == layers::Norm::None;
        let conv = Conv::new(p, &name, (channels, width), s.kernel, 2, bias)?;
        side = conv.out_side(side).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{name}: a {side}-pixel feature map is smaller than the kernel {}",
                s.kernel
            ))
        })?;
        let norm = NormLayer::new(p, &format!("{name}.norm"), width, norm)?;
        stages.push(DownStage { name, conv, norm });
        channels = width;
    }
    Ok((stages, channels, side))
}

/// The VAE-GAN encoder (`vae: #{ … }`): D's convolution stack, then a linear head to the
/// mean and log-variance of a Gaussian over G's noise.
pub struct Encoder {
    pub params: Params,
    stages: Vec<DownStage>,
    head: Linear,
    latent: usize,
    activation: layers::Act,
}

/// The encoder's answer for a batch: `[N, latent]` each.
pub struct Posterior {
    pub mean: Tensor,
    pub log_var: Tensor,
}

impl Encoder {
    pub fn new(spec: &GanSpec, device: &Device, seed: u64) -> Result<Self> {
        let mut p = Params::new(device);
        p.set_precision(spec.precision);
        let (stages, channels, side) = down_stages(&mut p, spec, "e", spec.channels)?;
        let head = Linear::new(
            &mut p,
            "e.head",
            channels * side * side,
            2 * spec.latent,
            true,
        )?;
        p.initialise(seed)?;
        Ok(Encoder {
            params: p,
            stages,
            head,
            latent: spec.latent,
            activation: spec.d_activation,
        })
    }

    pub fn forward(&self, images: &Tensor, ctx: &Ctx) -> Result<Posterior> {
        let p = &self.params;
        let mut x = images.clone();
        for stage in &self.stages {
            x = stage.conv.forward(p, &x)?;
            x = stage.norm.forward(p, &x, ctx)?;
            x = self.activation.apply(&x)?;
        }
        let out = self.head.forward(p, &x.flatten_from(1)?)?;
        Ok(Posterior {
            mean: out.narrow(1, 0, self.latent)?,
            // Bounded: an exp of a runaway log-variance would overflow the sample.
            log_var: out
                .narrow(1, self.latent, self.latent)?
                .clamp(-12f32, 6f32)?,
        })
    }
}

impl Posterior {
    /// A draw mean + σ·ε for standard normal `eps` (the reparameterisation trick: the
    /// gradient reaches the encoder through mean and σ).
    pub fn sample(&self, eps: &Tensor) -> Result<Tensor> {
        &self.mean + (eps * (&self.log_var * 0.5)?.exp()?)?
    }

    /// KL(q ‖ N(0, I)) in nats, summed over the latent and averaged over the batch.
    pub fn kl(&self) -> Result<Tensor> {
        let per = (((self.mean.sqr()? + self.log_var.exp()?)? - 1.0)? - &self.log_var)?;
        (per.sum(1)? * 0.5)?.mean_all()
    }
}

/// [`minibatch_std`] within each class: every image gets the mean standard deviation of
/// the images of its own label in the batch (`one_hot`: `[N, K]`). Classes with one image
/// in the batch get 0 spread, as a batch of one would.
pub fn class_std(x: &Tensor, one_hot: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let flat = x.reshape((n, c * h * w))?;
    let counts = one_hot.sum_keepdim(0)?.t()?.clamp(1.0, f64::MAX)?; // [K, 1]
    let means = one_hot.t()?.matmul(&flat)?.broadcast_div(&counts)?; // [K, F]
    let centred = (&flat - one_hot.matmul(&means)?)?;
    let var = one_hot
        .t()?
        .matmul(&centred.sqr()?)?
        .broadcast_div(&counts)?; // [K, F]
    let std = (var + 1e-8)?.sqrt()?.mean_keepdim(1)?; // [K, 1]
    let plane = one_hot
        .matmul(&std)? // [N, 1]
        .reshape((n, 1, 1, 1))?
        .broadcast_as((n, 1, h, w))?
        .contiguous()?;
    Tensor::cat(&[x, &plane], 1)
}

/// Appends one feature map holding the batch's mean standard deviation (over images, of
/// each feature), as ProGAN's D does with one group: a batch of near-copies shows up as a
/// low value D can learn to call fake. [`class_std`] with every image in one class.
pub fn minibatch_std(x: &Tensor) -> Result<Tensor> {
    class_std(x, &Tensor::ones((x.dim(0)?, 1), x.dtype(), x.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

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

    #[test]
    fn class_std_sees_a_collapsed_class_in_a_varied_batch() {
        // Class 0: three copies; class 1: images 0, 2 and 4 everywhere.
        let one = Tensor::ones((1, 2, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let at = |v: f64| (&one * v).unwrap();
        let x = Tensor::cat(&[at(1.0), at(0.0), at(1.0), at(2.0), at(1.0), at(4.0)], 0).unwrap();
        let labels = one_hot(&[0, 1, 0, 1, 0, 1], 2, &Device::Cpu).unwrap();
        let out = class_std(&x, &labels).unwrap();
        assert_eq!(out.dims(), &[6, 3, 2, 2]);
        let per_image: Vec<f32> = out
            .narrow(1, 2, 1)
            .unwrap()
            .mean((1, 2, 3))
            .unwrap()
            .to_vec1()
            .unwrap();
        for (k, v) in per_image.iter().enumerate() {
            let want = if k % 2 == 0 { 0.0 } else { 1.633 };
            assert!(
                (v - want).abs() < 1e-3,
                "image {k}: {v} (all {per_image:?})"
            );
        }
    }
}
