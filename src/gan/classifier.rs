//! The class-fidelity check: a small CNN trained on a run's real images and their labels,
//! then asked which class each generated image belongs to. A conditional generator whose
//! "triangles" samples the classifier calls triangles is faithful to its labels; a CAN
//! whose samples leave it unsure (high entropy) is not settling into one style.
//!
//! It is trained once per data set (a few seconds on one CPU core at 32x32) and cached
//! beside the run (`classifier.safetensors`), keyed by what the data is, so `easel eval`
//! and the trainer's evaluations agree and do not retrain.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::adam::Adam;
use super::augment::{self, Policy};
use super::data::Dataset;
use super::layers::{self, Act, Conv, Ctx, Linear, Norm, NormLayer, Params};

/// Feature widths of the three stride-2 convolutions.
const WIDTHS: [usize; 3] = [16, 32, 64];
/// Training steps (the progress bar's length).
pub const STEPS: u64 = 300;
const BATCH: usize = 64;
const LR: f64 = 1e-3;
/// Every this-many-th image (after a seeded shuffle) is held out to measure accuracy.
const HOLD_OUT_EVERY: usize = 10;

pub struct Classifier {
    params: Params,
    stages: Vec<(Conv, NormLayer)>,
    out: Linear,
    pub classes: Vec<String>,
    /// Fraction of held-out real images it labels correctly (1/K is chance).
    pub accuracy: f64,
    /// Images are average-pooled by this factor first (to about 32 pixels a side).
    pool: usize,
}

/// What fraction of a class's samples the classifier puts in that class.
pub fn fidelity(probabilities: &Tensor, label: usize) -> Result<f64> {
    let guess: Vec<u32> = probabilities.argmax(D::Minus1)?.to_vec1()?;
    if guess.is_empty() {
        return Ok(0.0);
    }
    Ok(guess.iter().filter(|&&g| g as usize == label).count() as f64 / guess.len() as f64)
}

/// How unsure the classifier is of a set of samples, both in [0, 1] (divided by ln K):
/// `ambiguity` is the mean entropy of each sample's prediction (CAN's aim: every picture
/// between styles), `spread` the entropy of the mean prediction (1 when the samples are
/// spread evenly over the styles, 0 when all fall in one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StyleEntropy {
    pub ambiguity: f64,
    pub spread: f64,
}

pub fn style_entropy(probabilities: &Tensor) -> Result<StyleEntropy> {
    let rows: Vec<Vec<f32>> = probabilities.to_vec2()?;
    let k = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || k < 2 {
        return Ok(StyleEntropy {
            ambiguity: 0.0,
            spread: 0.0,
        });
    }
    let entropy = |p: &mut dyn Iterator<Item = f64>| -> f64 {
        -p.filter(|&q| q > 0.0).map(|q| q * q.ln()).sum::<f64>() / (k as f64).ln()
    };
    let ambiguity = rows
        .iter()
        .map(|r| entropy(&mut r.iter().map(|&q| q as f64)))
        .sum::<f64>()
        / rows.len() as f64;
    let mut mean = vec![0.0f64; k];
    for r in &rows {
        for (m, &q) in mean.iter_mut().zip(r) {
            *m += q as f64 / rows.len() as f64;
        }
    }
    Ok(StyleEntropy {
        ambiguity,
        spread: entropy(&mut mean.into_iter()),
    })
}

fn pool_factor(size: usize) -> usize {
    let mut f = 1;
    while size / (2 * f) >= 28 && size.is_multiple_of(2 * f) {
        f *= 2;
    }
    f
}

/// A fingerprint of the data a classifier was trained on: class names, image count and
/// size, and a hash of a sample of the pixels (cheap, and changes when the folder does).
pub fn data_key(data: &Dataset) -> String {
    let mut bytes = Vec::new();
    let step = (data.len() / 64).max(1);
    for i in (0..data.len()).step_by(step) {
        bytes.extend_from_slice(data.image(i));
        bytes.extend_from_slice(&(data.labels[i] as u32).to_le_bytes());
    }
    format!(
        "{}:{}x{}x{}:{}:{:016x}",
        data.class_names.join(","),
        data.len(),
        data.channels,
        data.size,
        env!("CARGO_PKG_VERSION"),
        layers::stable_hash(&bytes, 0xC1A5_51F1)
    )
}

impl Classifier {
    /// An untrained classifier of images with `channels` channels, `size` pixels a side.
    fn new(
        classes: Vec<String>,
        channels: usize,
        size: usize,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        let mut p = Params::new(device);
        let mut inp = channels;
        let mut stages = vec![];
        for (k, &w) in WIDTHS.iter().enumerate() {
            let name = format!("c.conv{k}");
            let conv = Conv::new(&mut p, &name, (inp, w), 3, 2, true)?;
            let norm = NormLayer::new(&mut p, &format!("{name}.norm"), w, Norm::Layer)?;
            stages.push((conv, norm));
            inp = w;
        }
        let out = Linear::new(&mut p, "c.out", inp, classes.len(), true)?;
        p.initialise(seed)?;
        Ok(Classifier {
            params: p,
            stages,
            out,
            classes,
            accuracy: f64::NAN,
            pool: pool_factor(size),
        })
    }

    /// Class logits `[N, K]` for images `[N, C, S, S]` in [−1, 1].
    fn logits(&self, images: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let p = &self.params;
        let mut x = if self.pool > 1 {
            images.avg_pool2d(self.pool)?
        } else {
            images.clone()
        };
        for (conv, norm) in &self.stages {
            x = conv.forward(p, &x)?;
            x = norm.forward(p, &x, ctx)?;
            x = Act::LeakyRelu(0.2).apply(&x)?;
        }
        // Global average: the class of a tiling or a painting is everywhere in it.
        let x = x.mean(D::Minus1)?.mean(D::Minus1)?;
        Ok(self.out.forward(p, &x)?)
    }

    /// Class probabilities `[N, K]`, in batches (any N).
    pub fn probabilities(&self, images: &Tensor) -> Result<Tensor> {
        let ctx = Ctx {
            train: false,
            dropout_seed: 0,
            first_row: 0,
        };
        let n = images.dim(0)?;
        let mut parts = vec![];
        for start in (0..n).step_by(256) {
            let len = 256.min(n - start);
            let logits = self.logits(&images.narrow(0, start, len)?, &ctx)?;
            parts.push(candle_nn::ops::softmax(&logits, D::Minus1)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Trains on `data` (which must have at least two classes) for `steps` steps (the
    /// check uses [`STEPS`]) from `seed`, holding out every tenth image to measure accuracy.
    pub fn train(
        data: &Dataset,
        seed: u64,
        steps: u64,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<Self> {
        let k = data.class_names.len();
        if k < 2 {
            bail!("a class-fidelity check needs at least 2 classes; the data has {k}");
        }
        let device = data.device().clone();
        let classes = data.class_names.clone();
        let mut c = Classifier::new(classes, data.channels, data.size, &device, seed ^ 0xC1A5)?;
        let eval = Ctx {
            train: false,
            dropout_seed: 0,
            first_row: 0,
        };
        let mut opt = Adam::new(&c.params, LR, (0.9, 0.999))?;

        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x5EED_C1A5);
        let mut order: Vec<usize> = (0..data.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let hold_out = data.len() >= 20;
        let (mut held, mut train) = (vec![], vec![]);
        for (pos, i) in order.into_iter().enumerate() {
            if hold_out && pos % HOLD_OUT_EVERY == 0 {
                held.push(i);
            } else {
                train.push(i);
            }
        }
        // Shifted real images, so generated ones a few pixels off still count as their class.
        let shifts = Policy {
            translation: true,
            ..Policy::NONE
        };
        for step in 0..steps {
            let idx: Vec<usize> = (0..BATCH.min(train.len()))
                .map(|_| train[rng.random_range(0..train.len())])
                .collect();
            let labels: Vec<u32> = idx.iter().map(|&i| data.labels[i] as u32).collect();
            let x = augment::augment(
                &data.tensor_of(&idx)?,
                &shifts,
                0.5,
                augment::seed_for(seed, step, 0xC1),
            )?;
            let logits = c.logits(&x, &eval)?;
            let target = Tensor::from_vec(labels, idx.len(), &device)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &target)?;
            let grads = loss.backward()?;
            opt.step(&c.params, &grads)?;
            if let Some(bar) = bar {
                bar.inc(1);
            }
        }
        c.accuracy = if held.is_empty() {
            f64::NAN
        } else {
            let probs = c.probabilities(&data.tensor_of(&held)?)?;
            let guess: Vec<u32> = probs.argmax(D::Minus1)?.to_vec1()?;
            guess
                .iter()
                .zip(&held)
                .filter(|(&g, &i)| g as usize == data.labels[i])
                .count() as f64
                / held.len() as f64
        };
        Ok(c)
    }

    /// Writes the weights with the data key, class names and accuracy in the metadata.
    pub fn save(&self, path: &Path, key: &str) -> Result<()> {
        let mut meta = HashMap::new();
        meta.insert("data".to_string(), key.to_string());
        meta.insert("classes".to_string(), serde_json::to_string(&self.classes)?);
        meta.insert("accuracy".to_string(), self.accuracy.to_string());
        meta.insert("pool".to_string(), self.pool.to_string());
        super::train::save_safetensors(path, self.params.named_tensors(""), meta)
    }

    /// The classifier saved at `path` for data with this key, if there is one.
    pub fn load(path: &Path, key: &str, data: &Dataset) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let (tensors, meta) = super::train::load_safetensors(path, data.device().clone())?;
        if meta.get("data").map(String::as_str) != Some(key) {
            return Ok(None);
        }
        let classes = data.class_names.clone();
        let mut c = Classifier::new(classes, data.channels, data.size, data.device(), 0)?;
        c.params.load("", &tensors)?;
        c.accuracy = meta
            .get("accuracy")
            .and_then(|a| a.parse().ok())
            .unwrap_or(f64::NAN);
        Ok(Some(c))
    }

    /// The classifier for `data`: loaded from `path` when one was trained on the same
    /// data, else trained now and written there (`None`: not cached).
    pub fn cached(
        path: Option<&Path>,
        data: &Dataset,
        seed: u64,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<Self> {
        let key = data_key(data);
        if let Some(path) = path {
            // An unreadable cache is retrained, not fatal: it is only a cache.
            if let Ok(Some(c)) = Classifier::load(path, &key, data) {
                return Ok(c);
            }
        }
        let c = Classifier::train(data, seed, STEPS, bar)?;
        if let Some(path) = path {
            c.save(path, &key)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(rows: &[[f32; 2]]) -> Tensor {
        let v: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(v, (rows.len(), 2), &Device::Cpu).unwrap()
    }

    #[test]
    fn fidelity_counts_samples_put_in_their_class() {
        let p = probs(&[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]]);
        assert_eq!(fidelity(&p, 0).unwrap(), 0.5);
        assert_eq!(fidelity(&p, 1).unwrap(), 0.5);
    }

    #[test]
    fn entropy_tells_sure_from_unsure_and_one_style_from_many() {
        // Sure of each sample, all in one class: no ambiguity, no spread.
        let one = style_entropy(&probs(&[[1.0, 0.0], [1.0, 0.0]])).unwrap();
        assert_eq!((one.ambiguity, one.spread), (0.0, 0.0));
        // Sure of each, half in each class: spread 1, no ambiguity.
        let split = style_entropy(&probs(&[[1.0, 0.0], [0.0, 1.0]])).unwrap();
        assert!(split.ambiguity.abs() < 1e-9 && (split.spread - 1.0).abs() < 1e-9);
        // Unsure of every sample: both 1.
        let unsure = style_entropy(&probs(&[[0.5, 0.5], [0.5, 0.5]])).unwrap();
        assert!((unsure.ambiguity - 1.0).abs() < 1e-6 && (unsure.spread - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pooling_brings_sizes_to_about_32() {
        assert_eq!(
            [28, 32, 56, 64, 112, 128].map(pool_factor),
            [1, 1, 2, 2, 4, 4]
        );
    }
}
