//! The trainer: alternating D and G steps with Adam, a generator EMA for sampling,
//! fixed-noise sample grids, atomic safetensors checkpoints, exact resume, NaN guard, and
//! live control through the run directory.

use std::cell::Cell;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, D};
use image::DynamicImage;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::adam::Adam;
use super::augment::{self, AdaptiveP};
use super::classifier::Classifier;
use super::data::{self, Dataset};
use super::layers::{self, normal, Ctx, Params};
use super::model::{Discriminator, Encoder, Generator, PRIOR_MIX, PRIOR_SHIFT};
use super::swd;
use super::{GanSpec, Loss, ModelKind, Precision, VaeFakes};
use crate::ranks::{self, Ranks, Solo};
use crate::recipe;
use crate::run::tensorboard::{self, Ending, EventWriter};
use crate::run::{self, Control, Metric, RunDir, State, Status, Wanted};

/// Steps between R1 penalties (lazy regularisation).
const R1_EVERY: u64 = 4;

/// How the trainer reports progress (a bar on a terminal, log lines otherwise, or
/// nothing in tests).
pub trait Progress {
    fn start(&mut self, _from: u64, _total: u64) {}
    fn step(&mut self, _m: &Metric) {}
    fn note(&mut self, _text: &str) {}
    fn finish(&mut self) {}
    /// A bar for preparing data (reading a folder of pictures); hidden unless drawn.
    fn bar(&mut self, _len: u64, _what: &str) -> indicatif::ProgressBar {
        indicatif::ProgressBar::hidden()
    }
}

pub struct Silent;
impl Progress for Silent {}

/// Why `train` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Stopped through control.json.
    Stopped,
    /// Stopped by a signal (its number), after a checkpoint.
    Interrupted(i32),
}

/// Models and optimisers of one run.
pub struct Trainer {
    pub spec: GanSpec,
    pub g: Generator,
    pub d: Discriminator,
    pub ema: Generator,
    pub opt_g: Adam,
    pub opt_d: Adam,
    pub step: u64,
    pub class_names: Vec<String>,
    /// ADA's controller of the augmentation probability (`augment: #{ p: "auto" }`).
    pub ada: Option<AdaptiveP>,
    /// The VAE-GAN encoder and its optimiser (`vae: #{ … }`).
    pub encoder: Option<(Encoder, Adam)>,
    /// The processes training this run together, and this one's rows of each batch.
    ranks: Rc<dyn Ranks>,
    rows: Range<usize>,
    /// The step whose standing statistics the EMA generator holds (see
    /// [`Trainer::settle_ema`]); `None` once [`Trainer::update_ema`] has copied the raw
    /// generator's over them.
    ema_settled: Cell<Option<u64>>,
}

/// SWD ×10³ of the two generators' samples against the data (lower is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub ema: f64,
    pub raw: f64,
}

/// Which weights of a run a generator file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// The exponential moving average: smoother samples, once warmed up.
    Ema,
    /// The trained generator itself.
    Raw,
}

impl Weights {
    pub fn name(self) -> &'static str {
        match self {
            Weights::Ema => "ema",
            Weights::Raw => "raw",
        }
    }
}

impl Trainer {
    pub fn new(spec: &GanSpec, class_names: Vec<String>, device: &Device) -> Result<Self> {
        let classes = class_names.len();
        if matches!(spec.model, ModelKind::Cdcgan | ModelKind::Can) && classes < 2 {
            bail!(
                "model \"{}\" needs labelled data with at least 2 classes (a sketch with `classes`, or a folder with subfolders); found {classes}",
                spec.model
            );
        }
        let g = Generator::new(spec, classes, device, spec.seed)?;
        let d = Discriminator::new(spec, classes, device, spec.seed ^ 0xD15C)?;
        let ema = Generator::new(spec, classes, device, spec.seed)?;
        let opt_g = Adam::new(&g.params, spec.lr_g, spec.betas_g)?;
        let opt_d = Adam::new(&d.params, spec.lr_d, spec.betas_d)?;
        let ada = spec
            .augment
            .as_ref()
            .filter(|a| a.adaptive)
            .map(|a| AdaptiveP::new(spec.batch, a.ada_images));
        let encoder = match spec.vae {
            Some(_) => {
                let e = Encoder::new(spec, device, spec.seed ^ 0xE4C0)?;
                let opt = Adam::new(&e.params, spec.lr_g, spec.betas_g)?;
                Some((e, opt))
            }
            None => None,
        };
        Ok(Trainer {
            ada,
            encoder,
            spec: spec.clone(),
            g,
            d,
            ema,
            opt_g,
            opt_d,
            step: 0,
            class_names,
            ranks: Rc::new(Solo),
            rows: 0..spec.batch,
            ema_settled: Cell::new(None),
        })
    }

    /// Trains as one of `ranks`, on its rows of every batch.
    pub fn with_ranks(mut self, ranks: Rc<dyn Ranks>) -> Result<Self> {
        let size = ranks.size();
        if size > 1 {
            if self.spec.batch < size {
                bail!(
                    "batch {} cannot be split over {size} ranks: every rank needs a row at least",
                    self.spec.batch
                );
            }
            if self.spec.mode_seeking > 0.0 {
                bail!(
                    "mode_seeking compares the two halves of the whole batch, which no rank \
                     holds: train it on one process, or set mode_seeking: 0"
                );
            }
            if self.spec.vae.is_some() && self.spec.d_norm == super::layers::Norm::Batch {
                // The prior is fitted to the encoder's codes in evaluation mode, through
                // each rank's own running statistics: the ranks would draw through
                // different priors.
                bail!(
                    "a VAE-GAN with d_norm \"batch\" cannot train on several ranks (each \
                     rank's batch statistics would give it its own prior): use d_norm \
                     \"layer\" or \"none\", or one process"
                );
            }
        }
        self.rows = ranks::rows(self.spec.batch, ranks.rank(), size);
        self.ranks = ranks;
        Ok(self)
    }

    /// Every rank's weights are rank 0's (by digest, network by network), or an error
    /// naming the first rank and network that differ: ranks that drift apart no longer
    /// train one model.
    pub fn check_ranks_agree(&self) -> Result<()> {
        if self.ranks.size() == 1 {
            return Ok(());
        }
        for (name, digest) in self.digests()? {
            let all = self.ranks.gather(digest)?;
            if let Some(r) = all.iter().position(|&d| d != all[0]) {
                bail!(
                    "rank {r}'s {name} weights differ from rank 0's at step {}: the ranks no \
                     longer train one model (stopped; the last checkpoint is intact, and \
                     --resume continues from it)",
                    self.step
                );
            }
        }
        Ok(())
    }

    /// A digest of each trained network's weights (the generator's, the discriminator's,
    /// a VAE-GAN's encoder's) and the step: ranks that train one run agree on them bit
    /// for bit.
    pub fn digests(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut nets = vec![
            ("generator", &self.g.params),
            ("discriminator", &self.d.params),
        ];
        nets.extend(self.encoder.as_ref().map(|(e, _)| ("encoder", &e.params)));
        nets.into_iter()
            .map(|(name, params)| {
                let mut h = self.step;
                for var in params.vars.values() {
                    let values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    h = super::layers::stable_hash(&bytes, h);
                }
                Ok((name, h))
            })
            .collect()
    }

    /// Noise for a step, from (seed, step): no generator state to save for resuming.
    fn noise(&self, step: u64, n: usize, device: &Device) -> Result<Tensor> {
        seeded_noise(
            self.spec.seed ^ 0x2017 ^ step.wrapping_mul(0xA24B_AED4_963E_E407),
            n,
            self.spec.latent,
            device,
        )
    }

    /// The augmentation probability in force (0 without augmentation).
    pub fn aug_p(&self) -> f64 {
        match (&self.spec.augment, &self.ada) {
            (Some(_), Some(ada)) => ada.p,
            (Some(a), None) => a.p,
            (None, _) => 0.0,
        }
    }

    /// DiffAugment as D sees images this step (`salt` tells the uses apart); identity
    /// without `augment`.
    fn augmented(&self, x: &Tensor, step: u64, salt: u64) -> Result<Tensor> {
        Ok(match &self.spec.augment {
            Some(a) => augment::augment_rows(
                x,
                &a.policy,
                self.aug_p(),
                augment::seed_for(self.spec.seed, step, salt),
                self.rows.start,
                self.spec.batch,
            )?,
            None => x.clone(),
        })
    }

    /// One D update and one G update. Returns the metric, or an error naming the step if
    /// a loss is not finite (nothing is updated then).
    ///
    /// With several ranks, this rank trains on its rows of the step's batch: every draw
    /// (images, noise, augmentations, dropout, R1's direction) is the whole batch's, of which
    /// it keeps its rows; its losses are its share of the batch's (means over the batch,
    /// not over its rows), so the ranks' gradients summed are one process's gradient.
    pub fn train_step(&mut self, data: &Dataset) -> Result<Metric> {
        let started = Instant::now();
        let dev = self.g.params.device.clone();
        let step = self.step;
        let n = self.spec.batch;
        let rows = self.rows.clone();
        let (first, m) = (rows.start, rows.len());
        let (real, labels) = data.batch_rows(self.spec.seed, step, n, rows.clone())?;
        let real = if self.spec.mirror {
            augment::mirror_rows(&real, augment::seed_for(self.spec.seed, step, 0x41), first)?
        } else {
            real
        };
        let run_seed = self.spec.seed;
        let ctx = |salt: u64| Ctx {
            train: true,
            dropout_seed: run_seed ^ step.wrapping_mul(31) ^ salt,
            first_row: first,
        };
        // A mean over this rank's rows as its share of the mean over the batch.
        let shared = self.ranks.size() > 1;
        let share = |t: Tensor, of: usize, total: usize| -> Result<Tensor> {
            Ok(if shared {
                (t * (of as f64 / total as f64))?
            } else {
                t
            })
        };
        // VAE-GAN: a draw from the encoder's Gaussian for each real image (un-augmented:
        // the codes are of the pictures, not of D's view of them).
        let codes = match (&self.spec.vae, &self.encoder) {
            (Some(vae), Some((encoder, _))) => {
                let posterior = encoder.forward(&real, &ctx(5))?;
                let eps = seeded_noise(
                    run_seed ^ 0xE75 ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    n,
                    self.spec.latent,
                    &dev,
                )?
                .narrow(0, first, m)?;
                let z = posterior.sample(&eps)?;
                Some((*vae, posterior, z))
            }
            _ => None,
        };
        // The fakes' codes in G's latent space: noise through the fitted prior, and with
        // a VAE, the first `redrawn` of them (of the whole batch) the real images' codes.
        let sampled = self
            .g
            .prior(&self.noise(step, n, &dev)?.narrow(0, first, m)?)?;
        let (z, redrawn, of_batch) = match &codes {
            None => (sampled, 0, 0),
            Some((vae, _, real_z)) => match vae.fakes {
                VaeFakes::Reconstructions => (real_z.clone(), m, n),
                VaeFakes::Samples => (sampled, 0, 0),
                VaeFakes::Both => {
                    // This rank's rows below the batch's half.
                    let h = (n / 2).saturating_sub(first).min(m);
                    let z =
                        Tensor::cat(&[real_z.narrow(0, 0, h)?, sampled.narrow(0, h, m - h)?], 0)?;
                    (z, h, n / 2)
                }
            },
        };

        // Discriminator.
        let fake = self.g.draw(&z, &labels, &ctx(1))?;
        // DiffAugment: D only ever sees augmented images, real and fake alike, and G's
        // gradient flows back through the augmentation of its own.
        let real_seen = self.augmented(&real, step, 0xA1)?;
        let on_real = self.d.forward(&real_seen, &labels, &ctx(2))?;
        let on_fake = self.d.forward(
            &self.augmented(&fake.detach(), step, 0xA2)?,
            &labels,
            &ctx(3),
        )?;
        let mut d_loss = match self.spec.loss {
            Loss::Bce => {
                (bce_with_logits(&on_real.logits, 1.0)? + bce_with_logits(&on_fake.logits, 0.0)?)?
            }
            Loss::Hinge => {
                ((1.0 - &on_real.logits)?.relu()?.mean_all()?
                    + (&on_fake.logits + 1.0)?.relu()?.mean_all()?)?
            }
        };
        if let Some(style) = &on_real.style {
            d_loss = (d_loss + cross_entropy(style, &labels)?)?;
        }
        if self.spec.r1 > 0.0 && step.is_multiple_of(R1_EVERY) {
            let slope = self.real_slope(&real_seen, &on_real.logits, &labels, step, &ctx(2))?;
            // Lazy regularisation (StyleGAN2): every R1_EVERY steps, weighted to match.
            let weight = self.spec.r1 / 2.0 * R1_EVERY as f64;
            d_loss = (d_loss + (slope.sqr()?.mean_all()? * weight)?)?;
        }
        let d_loss = share(d_loss, m, n)?;
        // The batch's loss, on every rank, before any rank updates anything.
        let d_value = self.finite_total(&d_loss, "discriminator", step)?;
        let mut d_grads = d_loss.backward()?;
        self.sum_gradients(&mut d_grads, &self.d.params)?;
        self.opt_d.step(&self.d.params, &d_grads)?;

        // Generator. D runs frozen: G's loss needs only the gradient of D's input.
        let on_gen = {
            let _frozen = self.d.params.frozen();
            self.d
                .forward(&self.augmented(&fake, step, 0xA3)?, &labels, &ctx(4))?
        };
        let mut g_loss = match self.spec.loss {
            Loss::Bce => bce_with_logits(&on_gen.logits, 1.0)?,
            Loss::Hinge => on_gen.logits.mean_all()?.neg()?,
        };
        if let Some(style) = &on_gen.style {
            // CAN's style ambiguity: push D's style guess for generated art to uniform.
            let uniform = (candle_nn::ops::log_softmax(style, D::Minus1)?
                .mean(D::Minus1)?
                .neg()?)
            .mean_all()?;
            g_loss = (g_loss + uniform)?;
        }
        if self.spec.mode_seeking > 0.0 && n >= 2 {
            g_loss = (g_loss + mode_seeking(&fake, &z)? * self.spec.mode_seeking)?;
        }
        let mut g_loss = share(g_loss, m, n)?;
        let (mut reconstruction, mut kl_nats) = (None, None);
        if let Some((vae, posterior, z_real)) = &codes {
            if vae.warmup > 0 {
                let fade = (step as f64 / vae.warmup as f64).min(1.0);
                g_loss = (g_loss * fade)?;
            }
            let (drawn, target, of) = match redrawn {
                0 if of_batch == 0 => (self.g.draw(z_real, &labels, &ctx(6))?, real.clone(), n),
                k => (fake.narrow(0, 0, k)?, real.narrow(0, 0, k)?, of_batch),
            };
            // A rank whose rows hold no reconstructions adds nothing to their mean.
            let rec = match drawn.dim(0)? {
                0 => Tensor::zeros((), DType::F32, &dev)?,
                k => share((&drawn - &target)?.sqr()?.mean_all()?, k, of)?,
            };
            let values = (real.elem_count() / m) as f64;
            let kl = share(posterior.kl()?, m, n)?;
            let [rec_total, kl_total] = self.totals([scalar(&rec)?, scalar(&kl)?])?;
            reconstruction = Some(finite(rec_total, "reconstruction", step)?);
            kl_nats = Some(finite(kl_total, "KL", step)?);
            let kl = (kl / values)?;
            g_loss = (g_loss + ((rec + (kl * vae.beta)?)? * vae.weight)?)?;
        }
        let g_value = self.finite_total(&g_loss, "generator", step)?;
        let mut g_grads = g_loss.backward()?;
        self.sum_gradients(&mut g_grads, &self.g.params)?;
        if let Some((encoder, _)) = &self.encoder {
            self.sum_gradients(&mut g_grads, &encoder.params)?;
        }
        let g_grad_norm = match self.spec.g_clip {
            0.0 => None,
            _ if self.step < self.spec.g_clip_from => None,
            max => {
                let mut trained = vec![&self.g.params];
                trained.extend(self.encoder.as_ref().map(|(e, _)| &e.params));
                Some(clip_grads(&mut g_grads, &trained, max)?)
            }
        };
        self.opt_g.step(&self.g.params, &g_grads)?;
        if let Some((encoder, opt)) = self.encoder.as_mut() {
            // The encoder learns at G's rate, live changes included.
            opt.lr = self.opt_g.lr;
            opt.step(&encoder.params, &g_grads)?;
        }

        self.update_ema()?;
        let aug_p = self.spec.augment.as_ref().map(|_| self.aug_p());
        let mean_prob = |t: &Tensor| -> Result<f64> {
            Ok(candle_nn::ops::sigmoid(t)?.mean_all()?.to_scalar::<f32>()? as f64)
        };
        let part = m as f64 / n as f64;
        let [sign, d_real, d_fake] = self.totals([
            augment::sign_mean(&on_real.logits)? * part,
            mean_prob(&on_real.logits)? * part,
            mean_prob(&on_fake.logits)? * part,
        ])?;
        if let Some(ada) = self.ada.as_mut() {
            ada.update(sign);
        }
        self.step += 1;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        Ok(Metric {
            step: self.step,
            epoch: self.step as f64 * n as f64 / data.len() as f64,
            d_loss: d_value,
            g_loss: g_value,
            d_real,
            d_fake,
            lr_g: self.opt_g.lr,
            lr_d: self.opt_d.lr,
            imgs_per_s: n as f64 / secs,
            time: run::now(),
            aug_p,
            reconstruction,
            g_grad_norm,
            kl: kl_nats,
            ..Metric::default()
        })
    }

    /// Sums over ranks of per-rank numbers (one exchange for all of them); the numbers
    /// themselves on one process.
    fn totals<const K: usize>(&self, mut values: [f64; K]) -> Result<[f64; K]> {
        if self.ranks.size() > 1 {
            self.ranks.sum_f64(&mut values)?;
        }
        Ok(values)
    }

    /// The batch's loss from this rank's share of it; an error on every rank when it is
    /// not finite.
    fn finite_total(&self, share: &Tensor, which: &str, step: u64) -> Result<f64> {
        let [total] = self.totals([scalar(share)?])?;
        finite(total, which, step)
    }

    /// Replaces this rank's gradients of `params` by their sum over ranks: one exchange
    /// of a flat buffer in the parameters' (sorted) order, then one flag a parameter that
    /// says which ranks have a gradient for it. A rank whose rows leave a parameter out of
    /// its loss (a VAE-GAN rank without reconstructions, say) has none where another has
    /// one: the parameter then gets the sum as it does in one process.
    fn sum_gradients(&self, grads: &mut GradStore, params: &Params) -> Result<()> {
        if self.ranks.size() == 1 {
            return Ok(());
        }
        let vars: Vec<&candle_core::Var> = params.vars.values().collect();
        let mut parts = vars
            .iter()
            .map(|var| match grads.get(var.as_tensor()) {
                Some(g) => g.detach().flatten_all(),
                None => var.as_tensor().zeros_like()?.flatten_all(),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let had: Vec<f32> = vars
            .iter()
            .map(|v| f32::from(u8::from(grads.get(v.as_tensor()).is_some())))
            .collect();
        parts.push(Tensor::from_vec(had, vars.len(), &params.device)?);
        let flat = Tensor::cat(&parts, 0)?;
        // On the GPUs where the ranks can (NCCL), else through host memory.
        let summed = match self.ranks.sum_on_device(&flat)? {
            Some(summed) => summed,
            None => {
                let mut values = flat.to_vec1::<f32>()?;
                self.ranks.sum_f32(&mut values)?;
                Tensor::from_vec(values, flat.dims1()?, &params.device)?
            }
        };
        let mut at = 0;
        let mut sums = vec![];
        for var in &vars {
            let len = var.elem_count();
            sums.push(summed.narrow(0, at, len)?.reshape(var.shape())?);
            at += len;
        }
        let anyone = summed.narrow(0, at, vars.len())?.to_vec1::<f32>()?;
        for ((var, g), anyone) in vars.iter().zip(sums).zip(anyone) {
            if anyone > 0.0 {
                grads.insert(var.as_tensor(), g);
            }
        }
        Ok(())
    }

    /// D's slope at real images along a random direction ε ~ N(0, I), by a finite
    /// difference: E[(∇D·ε)²] = |∇D|², so its mean square is the R1 penalty without the
    /// second-order gradients Candle (and easel's CPU kernels) do not have.
    fn real_slope(
        &self,
        real: &Tensor,
        logits: &Tensor,
        labels: &[usize],
        step: u64,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        const H: f64 = 1e-2;
        let mut rng = Pcg64Mcg::seed_from_u64(augment::seed_for(self.spec.seed, step, 0x121));
        // The whole batch's directions, this rank's rows of them.
        let skip = self.rows.start * real.elem_count() / real.dim(0)?.max(1);
        let eps: Vec<f32> = (0..skip + real.elem_count())
            .map(|_| normal(&mut rng))
            .skip(skip)
            .collect();
        let eps = Tensor::from_vec(eps, real.shape(), real.device())?;
        let nudged = self.d.forward(&(real + (eps * H)?)?, labels, ctx)?;
        Ok(((nudged.logits - logits)? / H)?)
    }

    /// VAE-GAN: fits the Gaussian of the encoder's codes of (up to) 1024 training images,
    /// mean m and covariance C = Cov(means) + mean posterior variance, and stores it as
    /// G's and the EMA's prior (z ↦ m + z·Lᵀ, L the Cholesky factor of C; see
    /// [`Generator::prior`]). Deterministic for a given state, so resume stays exact.
    pub fn fit_prior(&mut self, data: &Dataset) -> Result<()> {
        let Some((encoder, _)) = &self.encoder else {
            return Ok(());
        };
        let ctx = Ctx {
            train: false,
            dropout_seed: 0,
            first_row: 0,
        };
        let reference = data.reference(1024, self.spec.seed ^ 0x9A1)?;
        let (mut means, mut vars) = (vec![], vec![]);
        for start in (0..reference.dim(0)?).step_by(256) {
            let len = 256.min(reference.dim(0)? - start);
            let q = encoder.forward(&reference.narrow(0, start, len)?, &ctx)?;
            means.extend(q.mean.to_dtype(DType::F64)?.to_vec2::<f64>()?);
            vars.extend(q.log_var.exp()?.to_dtype(DType::F64)?.to_vec2::<f64>()?);
        }
        let (n, d) = (means.len() as f64, self.spec.latent);
        let m: Vec<f64> = (0..d)
            .map(|j| means.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let mut cov = vec![0.0; d * d];
        for r in &means {
            for i in 0..d {
                for j in 0..=i {
                    cov[i * d + j] += (r[i] - m[i]) * (r[j] - m[j]) / n;
                }
            }
        }
        for j in 0..d {
            cov[j * d + j] += vars.iter().map(|v| v[j]).sum::<f64>() / n + 1e-6;
        }
        let l = cholesky(&cov, d).context("the encoder's codes have no spread")?;
        // z·mix with mix = Lᵀ: mix[i][j] = L[j][i].
        let mix: Vec<f32> = (0..d * d).map(|k| l[(k % d) * d + k / d] as f32).collect();
        let shift: Vec<f32> = m.iter().map(|&v| v as f32).collect();
        let dev = self.g.params.device.clone();
        for g in [&self.g, &self.ema] {
            g.params
                .set_buffer(PRIOR_SHIFT, Tensor::from_vec(shift.clone(), d, &dev)?);
            g.params
                .set_buffer(PRIOR_MIX, Tensor::from_vec(mix.clone(), (d, d), &dev)?);
        }
        // The average's standing statistics were drawn through the old prior.
        self.ema_settled.set(None);
        Ok(())
    }

    fn update_ema(&mut self) -> Result<()> {
        // Warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on
        // the average follows the generator closely instead of holding on to the random
        // initial weights, which at 0.999 would still weigh 60% after 500 steps.
        let t = self.step as f64;
        let decay = self.spec.ema.min((1.0 + t) / (10.0 + t));
        for (name, var) in &self.ema.params.vars {
            let g = self.g.params.vars[name].as_tensor();
            let v = if decay > 0.0 {
                ((var.as_tensor() * decay)? + (g * (1.0 - decay))?)?
            } else {
                g.clone()
            };
            var.set(&v)?;
        }
        // Normalisation statistics are not averaged: take the generator's for now, and
        // the average's own when something reads it (`settle_ema`).
        *self.ema.params.buffers.lock().expect("buffers") =
            self.g.params.buffers.lock().expect("buffers").clone();
        self.ema_settled.set(None);
        Ok(())
    }

    /// Gives the EMA generator batch-norm statistics of its own weights (BigGAN's standing
    /// statistics, [`standing_statistics`]), once per step: everything that reads the
    /// average (evaluation, sample grids, checkpoints, generator files) calls this first.
    /// Drawn from (seed, step), so a resumed run saves what an unbroken one does; training
    /// itself never reads the average, so this changes no step.
    pub fn settle_ema(&self) -> Result<()> {
        if self.ema_settled.get() == Some(self.step) {
            return Ok(());
        }
        let seed = augment::seed_for(self.spec.seed, self.step, 0x57A4);
        standing_statistics(&self.ema, self.spec.batch, self.class_names.len(), seed)?;
        self.ema_settled.set(Some(self.step));
        Ok(())
    }

    /// Everything needed to continue exactly: weights, statistics, EMA, Adam moments.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.settle_ema()?;
        let mut tensors = self.g.params.named_tensors("g.");
        tensors.extend(self.d.params.named_tensors("d."));
        tensors.extend(self.ema.params.named_tensors("ema."));
        tensors.extend(self.opt_g.state("adam_g."));
        tensors.extend(self.opt_d.state("adam_d."));
        if let Some((encoder, opt)) = &self.encoder {
            tensors.extend(encoder.params.named_tensors("e."));
            tensors.extend(opt.state("adam_e."));
        }
        let mut meta = HashMap::new();
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert("adam_g_t".to_string(), self.opt_g.t.to_string());
        meta.insert("adam_d_t".to_string(), self.opt_d.t.to_string());
        if let Some((_, opt)) = &self.encoder {
            meta.insert("adam_e_t".to_string(), opt.t.to_string());
        }
        meta.insert("lr_g".to_string(), self.opt_g.lr.to_string());
        meta.insert("lr_d".to_string(), self.opt_d.lr.to_string());
        meta.insert(
            "classes".to_string(),
            serde_json::to_string(&self.class_names)?,
        );
        if let Some(ada) = &self.ada {
            meta.insert("ada".to_string(), serde_json::to_string(ada)?);
        }
        save_safetensors(path, tensors, meta)
    }

    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let (tensors, meta) = load_safetensors(path, self.g.params.device.clone())?;
        let get = |k: &str| -> Result<String> {
            meta.get(k)
                .cloned()
                .with_context(|| format!("{}: no {k}", path.display()))
        };
        self.g.params.load("g.", &tensors)?;
        self.d.params.load("d.", &tensors)?;
        self.ema.params.load("ema.", &tensors)?;
        self.opt_g
            .load("adam_g.", &tensors, get("adam_g_t")?.parse()?)?;
        self.opt_d
            .load("adam_d.", &tensors, get("adam_d_t")?.parse()?)?;
        self.opt_g.lr = get("lr_g")?.parse()?;
        self.opt_d.lr = get("lr_d")?.parse()?;
        if let Some((encoder, opt)) = self.encoder.as_mut() {
            encoder.params.load("e.", &tensors)?;
            opt.load("adam_e.", &tensors, get("adam_e_t")?.parse()?)?;
        }
        self.step = get("step")?.parse()?;
        if let (Some(ada), Some(saved)) = (self.ada.as_mut(), meta.get("ada")) {
            *ada = serde_json::from_str(saved)
                .with_context(|| format!("{}: bad ADA state", path.display()))?;
        }
        Ok(())
    }

    /// The EMA generator's weights alone: what `easel sample` needs.
    pub fn save_generator(&self, path: &Path) -> Result<()> {
        self.write_generator(path, Weights::Ema, None)
    }

    /// One generator's weights with what `easel sample` needs to use them (spec, classes,
    /// step), which weights they are, and their SWD when scored.
    pub fn write_generator(&self, path: &Path, which: Weights, swd: Option<f64>) -> Result<()> {
        if which == Weights::Ema {
            self.settle_ema()?;
        }
        let mut meta = HashMap::new();
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert(
            "classes".to_string(),
            serde_json::to_string(&self.class_names)?,
        );
        meta.insert("spec".to_string(), serde_json::to_string(&self.spec)?);
        meta.insert("weights".to_string(), which.name().to_string());
        if let Some(s) = swd {
            meta.insert("swd".to_string(), s.to_string());
        }
        let params = match which {
            Weights::Ema => &self.ema.params,
            Weights::Raw => &self.g.params,
        };
        save_safetensors(path, params.named_tensors(""), meta)
    }

    /// SWD of the EMA and the raw generator against `reference` (`[N, C, S, S]` real
    /// images), each on as many samples from fixed noise (so scores of one run compare).
    pub fn evaluate(&self, reference: &swd::Images) -> Result<Scores> {
        self.settle_ema()?;
        let (n, c, h, w) = reference.dims();
        let k = self.class_names.len();
        // One generator's samples at a time, as plain values (the tensor dropped): at
        // 128 px, 256 samples are 50 MB, and the evaluation's peak is what bounds a
        // run's memory.
        let score = |g: &Generator| -> Result<f64> {
            let z = seeded_noise(self.spec.seed ^ 0xE7A1, n, g.spec.latent, &g.params.device)?;
            // Chunk by chunk into one buffer: no tensor of all the samples beside it.
            let mut fake = Vec::with_capacity(n * c * h * w);
            generate_chunks(g, &z, &labels_in_turn(n, k), |part| {
                fake.extend(part.flatten_all()?.to_vec1::<f32>()?);
                Ok(())
            })?;
            let fake = swd::Images::new(&fake, n, c, h, w)?;
            Ok(swd::swd(reference, &fake, self.spec.seed ^ 0x5D)?.mean)
        };
        Ok(Scores {
            ema: score(&self.ema)?,
            raw: score(&self.g)?,
        })
    }

    /// A grid of the EMA generator's output on the run's fixed noise.
    pub fn sample_grid(&self, count: usize) -> Result<DynamicImage> {
        self.settle_ema()?;
        let k = self.class_names.len();
        let images = samples(&self.ema, count, k, self.spec.seed ^ 0xF1_7ED, 1.0)?;
        grid(&images, None)
    }
}

/// The lower-triangular L with L·Lᵀ = `a` (`d`×`d`, row-major, lower triangle read), or
/// `None` when `a` is not positive definite.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = a[i * d + i] - sum;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = (a[i * d + j] - sum) / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// `n` images of `g` from noise drawn from `seed`, the `classes` labels in turn (none
/// when 0).
pub fn samples(g: &Generator, n: usize, classes: usize, seed: u64, scale: f64) -> Result<Tensor> {
    let z = scaled_noise(seed, n, g.spec.latent, scale, &g.params.device)?;
    generate(g, &z, &labels_in_turn(n, classes))
}

/// [`seeded_noise`] times `scale` (training and its evaluations draw at 1; `easel sample`
/// and `easel eval` at the generator's `sample_scale`).
pub fn scaled_noise(
    seed: u64,
    n: usize,
    latent: usize,
    scale: f64,
    dev: &Device,
) -> Result<Tensor> {
    let z = seeded_noise(seed, n, latent, dev)?;
    Ok(if scale == 1.0 { z } else { (z * scale)? })
}

/// Labels for `n` samples, the `classes` in turn (all 0 when there are none).
pub fn labels_in_turn(n: usize, classes: usize) -> Vec<usize> {
    (0..n).map(|i| i % classes.max(1)).collect()
}

/// Samples per forward pass when generating many (an evaluation set, a grid).
const EVAL_CHUNK: usize = 64;

/// The generator's images for noise `z` and `labels`, in evaluation mode, in chunks: a
/// whole evaluation set at once could need gigabytes of activations.
pub fn generate(g: &Generator, z: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let mut parts = vec![];
    generate_chunks(g, z, labels, |part| {
        parts.push(part);
        Ok(())
    })?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// [`generate`]'s images a chunk at a time, each handed to `each` in order.
fn generate_chunks(
    g: &Generator,
    z: &Tensor,
    labels: &[usize],
    mut each: impl FnMut(Tensor) -> Result<()>,
) -> Result<()> {
    let ctx = Ctx {
        train: false,
        dropout_seed: 0,
        first_row: 0,
    };
    let n = z.dim(0)?;
    for start in (0..n).step_by(EVAL_CHUNK) {
        let len = EVAL_CHUNK.min(n - start);
        // Detached: a chunk's output would otherwise hold its whole forward graph (every
        // activation, for a backward pass that never comes) until the last chunk is done.
        let out = g.forward(&z.narrow(0, start, len)?, &labels[start..start + len], &ctx)?;
        each(out.detach())?;
    }
    Ok(())
}

/// Batches (of the run's batch size) whose statistics [`standing_statistics`] averages.
pub const STANDING_BATCHES: usize = 8;

/// BigGAN's "standing statistics": sets `g`'s batch-norm running means and variances to
/// the mean of its own batch statistics over [`STANDING_BATCHES`] batches of `batch`
/// samples in training mode (noise from `seed`, the `classes` in turn). The moving-average
/// generator averages weights, not statistics: the raw generator's running statistics,
/// which [`Trainer::update_ema`] copies, belong to other weights, and early in a run,
/// when the weights move fast, samples drawn with them come out off-colour and noisy.
/// A generator without batch norm is left as it is.
pub fn standing_statistics(g: &Generator, batch: usize, classes: usize, seed: u64) -> Result<()> {
    let p = &g.params;
    let ctx = Ctx {
        train: true,
        dropout_seed: seed,
        first_row: 0,
    };
    let batch = batch.max(2);
    let labels = labels_in_turn(batch, classes);
    let find = || -> Vec<(String, Tensor)> {
        p.buffers
            .lock()
            .expect("buffers")
            .iter()
            .filter(|(n, _)| n.ends_with(".running_mean") || n.ends_with(".running_var"))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect()
    };
    let mut running = find();
    if running.is_empty() {
        // A generator that never ran in training mode has no statistics yet: one pass
        // makes them (and finds whether it has batch norm at all).
        let z = seeded_noise(seed, batch, g.spec.latent, &p.device)?;
        drop(g.forward(&z, &labels, &ctx)?);
        running = find();
        if running.is_empty() {
            return Ok(());
        }
    }
    let mut sums: Vec<Tensor> = running
        .iter()
        .map(|(_, t)| t.zeros_like())
        .collect::<candle_core::Result<_>>()?;
    for k in 0..STANDING_BATCHES {
        // From zero, one update leaves RUNNING_MOMENTUM times the batch's statistic.
        for (name, t) in &running {
            p.set_buffer(name, t.zeros_like()?);
        }
        let z = seeded_noise(seed.wrapping_add(k as u64), batch, g.spec.latent, &p.device)?;
        drop(g.forward(&z, &labels, &ctx)?);
        for ((name, _), sum) in running.iter().zip(sums.iter_mut()) {
            let part = p.buffer(name).context("a running statistic went missing")?;
            *sum = (&*sum + part.detach())?;
        }
    }
    let scale = (1.0 / layers::RUNNING_MOMENTUM) / STANDING_BATCHES as f64;
    for ((name, _), sum) in running.iter().zip(sums) {
        p.set_buffer(name, (sum * scale)?);
    }
    Ok(())
}

/// `[n, latent]` standard normal noise from `seed`.
pub fn seeded_noise(seed: u64, n: usize, latent: usize, device: &Device) -> Result<Tensor> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * latent).map(|_| normal(&mut rng)).collect();
    Ok(Tensor::from_vec(v, (n, latent), device)?)
}

/// MSGAN's term (Mao et al. 2019): 1 / (|G(z1) − G(z2)| / |z1 − z2|) over the batch's two
/// halves, mean absolute differences. Small when different noise draws different pictures,
/// large when G ignores its noise (a collapsed generator).
pub fn mode_seeking(fake: &Tensor, z: &Tensor) -> Result<Tensor> {
    let half = fake.dim(0)? / 2;
    let apart = |t: &Tensor| -> Result<Tensor> {
        Ok((t.narrow(0, 0, half)? - t.narrow(0, half, half)?)?
            .abs()?
            .mean_all()?)
    };
    let ratio = (apart(fake)? / apart(z)?)?;
    Ok((ratio + 1e-5)?.recip()?)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_scalar::<f32>()? as f64)
}

fn finite(v: f64, which: &str, step: u64) -> Result<f64> {
    if !v.is_finite() {
        bail!("the {which} loss became {v} at step {}; stopped without updating (the last checkpoint is intact). Try a lower learning rate.", step + 1);
    }
    Ok(v)
}

/// Mean binary cross-entropy against a constant target, in the stable form
/// max(x, 0) − x·t + log(1 + e^−|x|). Kept rather than candle-nn's
/// `binary_cross_entropy_with_logit`, which takes log(sigmoid(x)) and overflows to inf for
/// confident logits (|x| ≳ 90), exactly when a GAN's D wins.
pub fn bce_with_logits(logits: &Tensor, target: f64) -> candle_core::Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((logits.relu()? - (logits * target)?)? + softplus_neg_abs)?.mean_all()
}

/// CAN's style loss: candle-nn's cross-entropy over the class logits.
fn cross_entropy(logits: &Tensor, labels: &[usize]) -> candle_core::Result<Tensor> {
    let targets: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let targets = Tensor::from_vec(targets, labels.len(), logits.device())?;
    candle_nn::loss::cross_entropy(logits, &targets)
}

/// Scales the gradients of `params` in `grads` down so that their global L2 norm is at
/// most `max` (gradient clipping, as torch's clip_grad_norm_); returns the norm before.
fn clip_grads(grads: &mut GradStore, params: &[&Params], max: f64) -> Result<f64> {
    let mut squares = vec![];
    for v in params.iter().flat_map(|p| p.vars.values()) {
        if let Some(g) = grads.get(v.as_tensor()) {
            squares.push(g.detach().sqr()?.sum_all()?.to_dtype(DType::F32)?);
        }
    }
    if squares.is_empty() {
        return Ok(0.0);
    }
    // One read back from the device per step.
    let norm = (Tensor::stack(&squares, 0)?.sum_all()?.to_scalar::<f32>()? as f64).sqrt();
    if norm > max {
        let scale = max / norm;
        for v in params.iter().flat_map(|p| p.vars.values()) {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g.detach() * scale)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

/// Tiles `[N, C, S, S]` images in [−1, 1] into a square-ish grid with 2 px gaps.
/// `threshold`: pixels above it become white, the rest black (py-truchet-gan's refinement).
/// RGBA images are shown over a light checkerboard (for previews; see [`grid_with_alpha`]).
pub fn grid(images: &Tensor, threshold: Option<f64>) -> Result<DynamicImage> {
    tile_grid(images, threshold, false)
}

/// [`grid`], but RGBA images keep their transparency (an RGBA grid, gaps transparent):
/// for files a person keeps, where a checkerboard drawn in could not be taken out again.
pub fn grid_with_alpha(images: &Tensor, threshold: Option<f64>) -> Result<DynamicImage> {
    tile_grid(images, threshold, true)
}

fn tile_grid(images: &Tensor, threshold: Option<f64>, keep_alpha: bool) -> Result<DynamicImage> {
    let (n, c, h, w) = images.dims4()?;
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    let values: Vec<f32> = images.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    // RGBA kept: 4 bytes a pixel, transparent gaps; otherwise RGB on dark gaps.
    let rgba = keep_alpha && c == 4;
    let bytes = if rgba { 4 } else { 3 };
    let mut out = vec![if rgba { 0u8 } else { 40 }; gw * gh * bytes];
    for i in 0..n {
        let (ox, oy) = (gap + (i % cols) * (w + gap), gap + (i / cols) * (h + gap));
        for y in 0..h {
            for x in 0..w {
                let unit = |ch: usize| {
                    ((values[((i * c + ch) * h + y) * w + x] as f64 + 1.0) / 2.0).clamp(0.0, 1.0)
                };
                let alpha = if c == 4 { unit(3) } else { 1.0 };
                // Shown without alpha, RGBA goes over a light checkerboard, so
                // transparency shows.
                let check = if (x / 8 + y / 8) % 2 == 0 { 0.8 } else { 0.6 };
                let px = &mut out[((oy + y) * gw + ox + x) * bytes..][..bytes];
                for (ch, byte) in px.iter_mut().enumerate().take(3) {
                    let v = unit(ch.min(c - 1));
                    let v = match threshold {
                        Some(t) => (v > t) as u8 as f64,
                        None => v,
                    };
                    let v = if rgba {
                        v
                    } else {
                        v * alpha + check * (1.0 - alpha)
                    };
                    *byte = (v * 255.0).round() as u8;
                }
                if rgba {
                    px[3] = (alpha * 255.0).round() as u8;
                }
            }
        }
    }
    Ok(if rgba {
        DynamicImage::ImageRgba8(
            image::RgbaImage::from_raw(gw as u32, gh as u32, out).expect("size"),
        )
    } else {
        let img = image::RgbImage::from_raw(gw as u32, gh as u32, out).expect("size");
        if c == 1 {
            DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(img).to_luma8())
        } else {
            DynamicImage::ImageRgb8(img)
        }
    })
}

pub fn save_safetensors(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    meta: HashMap<String, String>,
) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))?;
    recipe::write_atomically(path, |f| Ok(std::io::Write::write_all(f, &bytes)?))
}

pub fn load_safetensors(
    path: &Path,
    device: Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        tensors.insert(
            name.to_string(),
            candle_core::safetensors::Load::load(&view, &device)?,
        );
    }
    Ok((tensors, meta))
}

/// Options of one `easel train`.
pub struct TrainOptions {
    /// Train to this step in all (else the run's recorded target on resume, else the
    /// sketch's `steps`).
    pub steps: Option<usize>,
    pub resume: bool,
    pub device: Device,
    /// Set (to the signal's number) by a SIGINT/SIGTERM handler: the run checkpoints
    /// after the step in flight and returns [`Outcome::Interrupted`].
    pub interrupt: Arc<AtomicUsize>,
    /// Loads a data sketch (`easel::spec::data_sketch`): needed when the data is
    /// rendered by one (`data: #{ from: "x.rhai" }`), not for a folder.
    pub open_sketch: Option<data::OpenSketch>,
    /// The processes that train the run together ([`Solo`] unless launched by MPI);
    /// rank 0 writes the run directory, the others only train.
    pub ranks: Rc<dyn Ranks>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: None,
            resume: false,
            device: Device::Cpu,
            interrupt: Arc::default(),
            open_sketch: None,
            ranks: Rc::new(Solo),
        }
    }
}

/// Runs (or resumes) training in `run`, writing status, metrics, samples and
/// checkpoints as it goes. Whatever ends it (done, stop, signal, error), the run keeps
/// its newest checkpoint and a timelapse of its samples.
pub fn train(
    run: &RunDir,
    source: &str,
    spec: &GanSpec,
    opts: &TrainOptions,
    progress: &mut dyn Progress,
) -> Result<Outcome> {
    if opts.ranks.rank() != 0 {
        let result = follow(run, spec, opts);
        if let Err(e) = &result {
            // Rank 0 may be waiting for this rank in a collective, unable to say why the
            // run ends: this rank says it.
            if let Ok(mut status) = run.read_status() {
                status.state = State::Failed;
                status.message = format!("rank {}: {e:#}", opts.ranks.rank());
                status.updated = run::now();
                let _ = run.write_status(&status);
            }
        }
        return result;
    }
    // The target is part of the run: `--steps` is recorded in spec.json, and a resume
    // without `--steps` trains to it, not to the sketch's number.
    let recorded = opts
        .resume
        .then(|| std::fs::read_to_string(run.spec()).ok())
        .flatten()
        .and_then(|t| serde_json::from_str::<GanSpec>(&t).ok())
        .map(|s| s.steps);
    let total = opts.steps.or(recorded).unwrap_or(spec.steps) as u64;
    let ranks = opts.ranks.size();
    let mut device = crate::device::describe(&opts.device);
    if ranks > 1 {
        device = format!("{device} × {ranks} ranks");
    }
    if layers::runs_as(spec.precision, &opts.device) == Precision::Bf16 {
        device = format!("{device}, bf16");
    }
    let mut status = Status {
        state: State::Starting,
        message: "loading data".into(),
        pid: std::process::id(),
        step: 0,
        total_steps: total,
        checkpoint_step: None,
        device,
        gpu: crate::device::gpu(&opts.device),
        updated: run::now(),
        ranks,
    };
    run.write_status(&status)?;
    let result = train_inner(run, source, spec, opts, progress, &mut status);
    if let Err(e) = &result {
        status.state = State::Failed;
        status.message = format!("{e:#}");
        status.updated = run::now();
        run.write_status(&status)?;
        // Failed runs keep their timelapse too; a failure to write it must not hide `e`.
        let _ = write_timelapse(run);
        if let Ok(Some(mut events)) = EventWriter::append(&run.path) {
            let _ = events.end(status.step, Ending::Failed);
        }
    }
    progress.finish();
    result
}

fn train_inner(
    run: &RunDir,
    source: &str,
    spec: &GanSpec,
    opts: &TrainOptions,
    progress: &mut dyn Progress,
    status: &mut Status,
) -> Result<Outcome> {
    let total = status.total_steps;
    let (data, mut t, resumed) = prepare(run, spec, opts, progress)?;
    if resumed {
        run.truncate_metrics(t.step)?;
        status.step = t.step;
        status.checkpoint_step = Some(t.step);
        progress.note(&format!(
            "resumed from step {} with lr_g {} and lr_d {} (the sketch's)",
            t.step, spec.lr_g, spec.lr_d
        ));
    }
    if opts.resume {
        // A stop, pause or learning rate left in control.json belongs to the run that
        // ended; carried over, a stopped run would stop again at once.
        if let Some(old) = run.clear_control()? {
            progress.note(&format!(
                "control.json from the earlier run cleared ({}); nothing in it is kept",
                describe_control(&old)
            ));
        }
    }
    // Written after the checkpoint loaded, so a sketch whose structure no longer fits the
    // run leaves the run's record as it was.
    recipe::write_atomically(&run.sketch(), |f| {
        Ok(std::io::Write::write_all(f, source.as_bytes())?)
    })?;
    let recorded_spec = GanSpec {
        steps: total as usize,
        ..spec.clone()
    };
    run.write_json(&run.spec(), &recorded_spec)?;
    // TensorBoard's copy of the run: the steps past the checkpoint go, as in
    // metrics.jsonl; a run from before event files gets its earlier metrics.
    let had_events = !tensorboard::event_files(&run.path).is_empty();
    let mut events = EventWriter::resume(&run.path, opts.resume.then_some(t.step))?;
    if opts.resume && !had_events {
        for m in run.read_metrics() {
            events.metric(&m)?;
        }
    }
    events.text(t.step, "sketch", source)?;
    events.hparams(t.step, &serde_json::to_value(&recorded_spec)?)?;
    events.flush()?;
    if spec.precision == Precision::Bf16
        && layers::runs_as(spec.precision, &opts.device) == Precision::Fp32
    {
        progress.note(
            "precision bf16: this CPU has no AVX512_BF16 (or EASEL_CONV_KERNEL=gemm chose the \
             lesser kernels), so this run multiplies in f32",
        );
    }
    if spec.model == ModelKind::Cppn && spec.vae.is_none() {
        progress.note(
            "a CPPN-GAN without `vae` has drawn one picture for every noise in every run measured \
             (README, CPPN-GAN); sketches/gan_cppn.rhai is a recipe that learns varied samples",
        );
    }
    // The real images every evaluation compares with: fixed for the run.
    let reference = match spec.eval_every {
        0 => None,
        _ => {
            let real = data.reference(spec.eval_images.min(data.len()), spec.seed)?;
            Some(swd::OwnedImages::from_tensor(&real)?)
        }
    };
    let mut best = run::summary::best_recorded(&run.best_checkpoint()).0;
    // The class-fidelity check, trained (or loaded) at the first evaluation that needs it.
    let mut judge: Option<Classifier> = None;
    let mut sample_every = spec.sample_every as u64;
    let mut control_seen: Option<std::time::SystemTime> = None;
    status.state = State::Running;
    status.message.clear();
    progress.start(t.step, total);
    let mut last_status_write = Instant::now() - Duration::from_secs(10);
    let mut paused = false;
    while t.step < total {
        let signal = interrupted(opts);
        let mut wanted = None;
        if signal.is_none() {
            // Live control, picked up within a step (every 200 ms while paused).
            let modified = std::fs::metadata(run.control_path())
                .and_then(|m| m.modified())
                .ok();
            if modified != control_seen || paused {
                let fresh = modified != control_seen;
                control_seen = modified;
                let c = match run.read_control() {
                    Ok(c) => c,
                    Err(e) => {
                        if fresh {
                            progress.note(&format!("control.json ignored: {e:#}"));
                        }
                        Control::default()
                    }
                };
                for refused in apply_control(&c, &mut t, &mut sample_every) {
                    if fresh {
                        progress.note(&format!("control.json: {refused}"));
                    }
                }
                wanted = c.state;
            }
        }
        // Made after control.json is applied: it carries the live values.
        let mut order = match (signal, wanted) {
            (Some(signal), _) => Order::Interrupted(signal),
            (None, Some(Wanted::Stop)) => Order::Stop,
            (None, Some(Wanted::Pause)) => Order::Pause,
            (None, Some(Wanted::Run) | None) => Order::Train {
                lr_g: t.opt_g.lr,
                lr_d: t.opt_d.lr,
                sample_every,
                total,
            },
        };
        tell(&*opts.ranks, &mut order)?;
        if let Some(outcome) = order.ending() {
            t.check_ranks_agree()?;
            return end_early(run, &t, status, &mut events, outcome);
        }
        match order {
            Order::Pause => {
                if !paused {
                    paused = true;
                    status.state = State::Paused;
                    status.updated = run::now();
                    run.write_status(status)?;
                    progress.note("paused (control.json)");
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            _ => {
                if paused {
                    paused = false;
                    status.state = State::Running;
                }
            }
        }
        let mut metric = t.train_step(&data)?;
        if refits_prior(spec, t.step, total, sample_every) {
            // Samples, scores and generator files draw through the prior of this step.
            t.fit_prior(&data)?;
        }
        if t.step.is_multiple_of(AGREE_EVERY) {
            t.check_ranks_agree()?;
        }
        let evaluating =
            reference.is_some() && (t.step % spec.eval_every as u64 == 0 || t.step == total);
        if let Some(reference) = reference.as_ref().filter(|_| evaluating) {
            let scores = t.evaluate(&reference.images())?;
            (metric.swd, metric.swd_raw) = (Some(scores.ema), Some(scores.raw));
            let judged = t.g.conditional() || spec.model == ModelKind::Can;
            if judged && judge.is_none() && data.class_names.len() >= 2 {
                let c = Classifier::cached(Some(&run.classifier()), &data, spec.seed, None)?;
                progress.note(&format!(
                    "class check: a classifier of the {} classes names {:.0}% of held-out real images right",
                    c.classes.len(),
                    100.0 * c.accuracy
                ));
                judge = Some(c);
            }
            if spec.model == ModelKind::Can {
                if let Some(c) = judge.as_ref() {
                    let k = t.class_names.len();
                    let fake = samples(&t.ema, spec.eval_images, k, spec.seed ^ 0x57, 1.0)?;
                    let e = super::classifier::style_entropy(&c.probabilities(&fake)?)?;
                    metric.style_ambiguity = Some(e.ambiguity);
                    progress.note(&format!(
                        "step {}: style ambiguity {:.2} (0: every sample plainly one class, 1: none), spread over classes {:.2}",
                        t.step, e.ambiguity, e.spread
                    ));
                }
            }
            if t.g.conditional() {
                let per_class = (spec.eval_images / t.class_names.len().max(1)).clamp(16, 128);
                metric.classes = super::quality::class_scores(
                    &t.ema,
                    &t.class_names,
                    &data,
                    per_class,
                    spec.seed ^ 0xC1A5,
                    1.0,
                    judge.as_ref(),
                )?;
                for c in &metric.classes {
                    if c.diversity < super::quality::LOW_DIVERSITY {
                        progress.note(&format!(
                            "step {}: class {} varies {:.2}× as much as its pictures (SWD {:.1}): is it collapsing?",
                            t.step, c.name, c.diversity, c.swd
                        ));
                    }
                }
            }
            let (score, which) = if scores.raw < scores.ema {
                (scores.raw, Weights::Raw)
            } else {
                (scores.ema, Weights::Ema)
            };
            if best.is_none_or(|b| score < b) {
                t.write_generator(&run.best_checkpoint(), which, Some(score))?;
                best = Some(score);
            }
            progress.note(&format!(
                "step {}: SWD {:.1} (EMA), {:.1} (raw); best {:.1}",
                t.step,
                scores.ema,
                scores.raw,
                best.unwrap_or(score)
            ));
        }
        run.append_metric(&metric)?;
        events.metric(&metric)?;
        progress.step(&metric);
        status.step = t.step;
        if t.step % sample_every == 0 || t.step == total {
            let img = t.sample_grid(64)?;
            let path = run.samples_dir().join(format!("step_{:06}.png", t.step));
            recipe::write_png(&path, &img, None)?;
            events.image(t.step, "samples", &img, std::fs::read(&path)?)?;
            // Kept current, so a run killed with -9 still has one.
            write_timelapse(run)?;
        }
        // Flushed before the checkpoint: a run killed right after it resumes from this
        // step, and keeps only the events up to it, so this step's must be in the file.
        events.flush()?;
        if t.step % spec.checkpoint_every as u64 == 0 || t.step == total {
            checkpoint(run, &t, status)?;
            if t.step % spec.keep_every as u64 == 0 {
                let kept = run
                    .checkpoints_dir()
                    .join(format!("step_{:06}.safetensors", t.step));
                recipe::copy_atomically(&run.latest_checkpoint(), &kept)?;
            }
        }
        if last_status_write.elapsed() > Duration::from_millis(500) || t.step == total {
            status.gpu = crate::device::gpu(&opts.device);
            status.updated = run::now();
            run.write_status(status)?;
            last_status_write = Instant::now();
        }
    }
    tell(&*opts.ranks, &mut Order::Done)?;
    t.check_ranks_agree()?;
    t.save_generator(&run.generator())?;
    write_timelapse(run)?;
    events.end(t.step, Ending::Finished)?;
    status.state = State::Done;
    status.updated = run::now();
    run.write_status(status)?;
    Ok(Outcome::Done)
}

/// What rank 0 tells the other ranks before every step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Order {
    /// Take a step with these live values (control.json may have changed them).
    Train {
        lr_g: f64,
        lr_d: f64,
        sample_every: u64,
        total: u64,
    },
    /// Paused: ask again shortly.
    Pause,
    Stop,
    Interrupted(i32),
    /// The run reached its target.
    Done,
}

impl Order {
    /// How the run ends on this order, if it does.
    fn ending(&self) -> Option<Outcome> {
        match self {
            Order::Done => Some(Outcome::Done),
            Order::Stop => Some(Outcome::Stopped),
            Order::Interrupted(signal) => Some(Outcome::Interrupted(*signal)),
            Order::Train { .. } | Order::Pause => None,
        }
    }
}

/// Rank 0's order, on every rank (the others' `order` is replaced).
fn tell(ranks: &dyn Ranks, order: &mut Order) -> Result<()> {
    if ranks.size() == 1 {
        return Ok(());
    }
    let mut bytes = serde_json::to_vec(order)?;
    ranks.broadcast(&mut bytes)?;
    *order = serde_json::from_slice(&bytes).context("an order from rank 0")?;
    Ok(())
}

/// Steps between checks that every rank holds the same weights.
const AGREE_EVERY: u64 = 50;

/// Whether the VAE prior is refitted after the step that reached `step`: before every
/// evaluation, sample grid and the end (on every rank alike: training draws through it).
fn refits_prior(spec: &GanSpec, step: u64, total: u64, sample_every: u64) -> bool {
    (spec.eval_every > 0 && step.is_multiple_of(spec.eval_every as u64))
        || step.is_multiple_of(sample_every)
        || step == total
}

/// What every rank does before the first step, in the same order: the data (rank 0
/// builds a folder's cache while the others wait, then they map it), the models, the
/// checkpoint when resuming, and a check that all start from the same weights. Returns
/// whether a checkpoint was loaded.
fn prepare(
    run: &RunDir,
    spec: &GanSpec,
    opts: &TrainOptions,
    progress: &mut dyn Progress,
) -> Result<(Dataset, Trainer, bool)> {
    let ranks = &opts.ranks;
    let data = if ranks.rank() == 0 {
        let data = data::load_for_run(spec, run, &opts.device, progress, opts.open_sketch)?;
        ranks.barrier()?;
        data
    } else {
        ranks.barrier()?;
        data::load_for_rank(spec, run, &opts.device, opts.open_sketch)?
    };
    let mut t =
        Trainer::new(spec, data.class_names.clone(), &opts.device)?.with_ranks(ranks.clone())?;
    let resumed = opts.resume && run.latest_checkpoint().exists();
    if resumed {
        t.load_checkpoint(&run.latest_checkpoint())?;
        // The sketch is the source of truth on resume: its learning rates, not the
        // checkpoint's or an old control.json's (after a NaN, lowering `lr` in the sketch
        // and resuming must take effect).
        t.opt_g.lr = spec.lr_g;
        t.opt_d.lr = spec.lr_d;
    }
    // CPU ranks sum through MPI, GPU ranks may sum on the GPUs: all must be one kind.
    if ranks.size() > 1 {
        let kind = |d: &Device| match d {
            Device::Cpu => 0,
            _ => 1,
        };
        let kinds = ranks.gather(kind(&opts.device))?;
        if let Some(r) = kinds.iter().position(|&k| k != kinds[0]) {
            bail!(
                "rank {r} trains on {} but rank 0 on {}: every rank needs the same kind of \
                 device (--device cuda gives each rank on a machine its own GPU)",
                ["the CPU", "a GPU"][kinds[r] as usize],
                ["the CPU", "a GPU"][kinds[0] as usize]
            );
        }
    }
    t.check_ranks_agree()?;
    Ok((data, t, resumed))
}

/// A rank other than 0: trains its rows of every batch as rank 0 orders, and writes
/// nothing (rank 0 keeps the run directory).
fn follow(run: &RunDir, spec: &GanSpec, opts: &TrainOptions) -> Result<Outcome> {
    let (data, mut t, _) = prepare(run, spec, opts, &mut Silent)?;
    loop {
        let mut order = Order::Done;
        tell(&*opts.ranks, &mut order)?;
        if let Some(end) = order.ending() {
            // As rank 0 does before its last checkpoint.
            t.check_ranks_agree()?;
            return Ok(end);
        }
        match order {
            // Rank 0 asks again in 200 ms: wait most of it here rather than in the
            // collective, which may spin.
            Order::Pause => std::thread::sleep(Duration::from_millis(150)),
            Order::Train {
                lr_g,
                lr_d,
                sample_every,
                total,
            } => {
                (t.opt_g.lr, t.opt_d.lr) = (lr_g, lr_d);
                t.train_step(&data)?;
                if refits_prior(spec, t.step, total, sample_every) {
                    t.fit_prior(&data)?;
                }
                if t.step.is_multiple_of(AGREE_EVERY) {
                    t.check_ranks_agree()?;
                }
            }
            // Returned above.
            Order::Done | Order::Stop | Order::Interrupted(_) => {}
        }
    }
}

fn interrupted(opts: &TrainOptions) -> Option<i32> {
    match opts.interrupt.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal as i32),
    }
}

/// Stop or signal: checkpoint at the current step, leave the generator for `easel
/// sample` and the timelapse, and say why in status.json.
fn end_early(
    run: &RunDir,
    t: &Trainer,
    status: &mut Status,
    events: &mut EventWriter,
    outcome: Outcome,
) -> Result<Outcome> {
    checkpoint(run, t, status)?;
    t.save_generator(&run.generator())?;
    write_timelapse(run)?;
    events.end(t.step, Ending::Unfinished)?;
    status.state = State::Stopped;
    status.message = match &outcome {
        Outcome::Interrupted(signal) => format!("interrupted by {}", signal_name(*signal)),
        _ => "stopped by control.json".into(),
    };
    status.updated = run::now();
    run.write_status(status)?;
    Ok(outcome)
}

fn signal_name(signal: i32) -> String {
    match signal {
        2 => "SIGINT (Ctrl-C)".into(),
        15 => "SIGTERM".into(),
        1 => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

fn describe_control(c: &Control) -> String {
    let mut parts = vec![];
    if let Some(s) = c.state {
        parts.push(format!(
            "state {}",
            serde_json::to_string(&s).unwrap_or_default()
        ));
    }
    if let Some(v) = c.lr_g {
        parts.push(format!("lr_g {v}"));
    }
    if let Some(v) = c.lr_d {
        parts.push(format!("lr_d {v}"));
    }
    if let Some(v) = c.sample_every {
        parts.push(format!("sample_every {v}"));
    }
    if parts.is_empty() {
        "empty".into()
    } else {
        parts.join(", ")
    }
}

/// Applies control.json's live values; returns a message for each refused one. The
/// bounds are the sketch's, so control.json cannot do what a sketch may not.
fn apply_control(c: &Control, t: &mut Trainer, sample_every: &mut u64) -> Vec<String> {
    let mut refused = vec![];
    let lr_ok = |v: f64| v.is_finite() && (super::LR_RANGE).contains(&v);
    for (name, value, lr) in [
        ("lr_g", c.lr_g, &mut t.opt_g.lr),
        ("lr_d", c.lr_d, &mut t.opt_d.lr),
    ] {
        match value {
            Some(v) if lr_ok(v) => *lr = v,
            Some(v) => refused.push(format!(
                "{name} {v} refused: must be between {:e} and {}",
                super::LR_RANGE.start(),
                super::LR_RANGE.end()
            )),
            None => {}
        }
    }
    match c.sample_every {
        Some(n) if super::SAMPLE_EVERY_RANGE.contains(&(n as i64)) => *sample_every = n,
        Some(n) => refused.push(format!(
            "sample_every {n} refused: must be between {} and {}",
            super::SAMPLE_EVERY_RANGE.start(),
            super::SAMPLE_EVERY_RANGE.end()
        )),
        None => {}
    }
    refused
}

fn checkpoint(run: &RunDir, t: &Trainer, status: &mut Status) -> Result<()> {
    t.save_checkpoint(&run.latest_checkpoint())?;
    status.checkpoint_step = Some(t.step);
    Ok(())
}

/// At most this many frames go into the timelapse (evenly spread, first and last kept):
/// it is rewritten at every sample, so its cost must not grow with the run.
const TIMELAPSE_FRAMES: usize = 48;

/// The fixed-noise grids through training, as a looping GIF.
pub fn write_timelapse(run: &RunDir) -> Result<()> {
    let all = run.samples();
    if all.is_empty() {
        return Ok(());
    }
    let n = all.len().min(TIMELAPSE_FRAMES);
    let samples: Vec<&std::path::PathBuf> = (0..n)
        .map(|i| {
            &all[if n == 1 {
                all.len() - 1
            } else {
                i * (all.len() - 1) / (n - 1)
            }]
        })
        .collect();
    let frames: Vec<image::RgbImage> = samples
        .iter()
        .filter_map(|p| image::open(p).ok().map(|i| i.to_rgb8()))
        .collect();
    let Some(size) = frames.first().map(|f| f.dimensions()) else {
        return Ok(());
    };
    let frames: Vec<image::RgbImage> = frames
        .into_iter()
        .filter(|f| f.dimensions() == size)
        .collect();
    recipe::write_gif(&run.timelapse(), &frames, 20)
}

#[cfg(test)]
mod tests {
    use super::cholesky;

    #[test]
    fn cholesky_factors_a_covariance_and_refuses_one_without_spread() {
        // A = B·Bᵀ + I for a fixed B: symmetric positive definite.
        let d = 4;
        let b: Vec<f64> = (0..d * d)
            .map(|k| ((k * 7 % 5) as f64 - 2.0) * 0.5)
            .collect();
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let l = cholesky(&a, d).expect("positive definite");
        for i in 0..d {
            for j in 0..d {
                let llt: f64 = (0..d).map(|k| l[i * d + k] * l[j * d + k]).sum();
                assert!((llt - a[i * d + j]).abs() < 1e-9, "({i}, {j})");
                if j > i {
                    assert_eq!(l[i * d + j], 0.0, "lower triangular");
                }
            }
        }
        // All codes at one point: no Gaussian to fit.
        assert!(cholesky(&[0.0; 4], 2).is_none());
    }
}
