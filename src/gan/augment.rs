//! Differentiable augmentation for GANs trained on little data.
//!
//! DiffAugment (Zhao, Liu, Lin, Zhu & Han 2020, "Differentiable Augmentation for
//! Data-Efficient GAN Training", <https://arxiv.org/abs/2006.10738>) augments the real *and*
//! the generated images every time the discriminator sees them, with transforms built from
//! differentiable tensor ops, so that the generator's gradient passes through the
//! augmentation. The discriminator then cannot memorise a small training set, and because
//! both sides are augmented alike the generator is not taught to draw augmented images.
//!
//! The three policies follow the reference `DiffAugment_pytorch.py` of
//! `mit-han-lab/data-efficient-gans`, for images in [−1, 1]:
//! - `color`: brightness `x + b`, b ∈ [−0.5, 0.5); saturation `(x − mean_c)·s + mean_c`,
//!   s ∈ [0, 2); contrast `(x − mean_chw)·k + mean_chw`, k ∈ [0.5, 1.5), in that order;
//! - `translation`: an integer shift of up to 1/8 of each side, the uncovered border zero;
//! - `cutout`: a zero square of half of each side, its centre anywhere in the image (so it
//!   may be clipped by the border).
//!
//! Unlike the reference, which applies every transform to every image, each transform is
//! applied to each image with probability `p` (as ADA does: Karras et al. 2020, "Training
//! Generative Adversarial Networks with Limited Data", <https://arxiv.org/abs/2006.06676>);
//! `p = 1` is the reference. [`AdaptiveP`] adjusts `p` during training as ADA does.
//!
//! Every random number comes from a `Pcg64Mcg` seeded with the caller's seed (derive it
//! from the run seed and the step with [`seed_for`]), so a resumed run draws the same
//! augmentations. Each image always draws the same amount of randomness, whatever the
//! policy and `p`: the transform an image gets at one `p` is the one it gets at another,
//! and raising `p` only adds transforms.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Error, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Which DiffAugment transforms to apply. Written and parsed as the reference's policy
/// string, e.g. `"color,translation,cutout"` (order does not matter: they are always
/// applied color → translation → cutout, as the reference's recommended policy does).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Policy {
    pub color: bool,
    pub translation: bool,
    pub cutout: bool,
}

impl Policy {
    /// `color,translation,cutout`: the policy the paper recommends with little data.
    pub const ALL: Policy = Policy {
        color: true,
        translation: true,
        cutout: true,
    };
    pub const NONE: Policy = Policy {
        color: false,
        translation: false,
        cutout: false,
    };
    /// The names a policy string may list.
    pub const NAMES: [&'static str; 3] = ["color", "translation", "cutout"];

    pub fn is_empty(&self) -> bool {
        !(self.color || self.translation || self.cutout)
    }
}

/// A policy string named something other than color, translation or cutout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown augmentation \"{0}\"; expected a comma-separated list of color, translation, cutout"
)]
pub struct PolicyError(pub String);

impl FromStr for Policy {
    type Err = PolicyError;

    /// Parses `"color,translation,cutout"` (any order, any subset, spaces allowed; `""` or
    /// `"none"` is no augmentation).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let mut p = Policy::NONE;
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "color" => p.color = true,
                "translation" => p.translation = true,
                "cutout" => p.cutout = true,
                "none" => {}
                other => return Err(PolicyError(other.to_string())),
            }
        }
        Ok(p)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = [self.color, self.translation, self.cutout];
        let names: Vec<&str> = Self::NAMES
            .iter()
            .zip(on)
            .filter_map(|(n, on)| on.then_some(*n))
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

impl TryFrom<String> for Policy {
    type Error = PolicyError;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Policy> for String {
    fn from(p: Policy) -> String {
        p.to_string()
    }
}

/// A zeroed rectangle: rows `top..top + height`, columns `left..left + width`, clipped to
/// the image (`top` and `left` may be negative, the far edges may lie outside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutout {
    pub top: isize,
    pub left: isize,
    pub height: usize,
    pub width: usize,
}

impl Cutout {
    pub fn contains(&self, y: usize, x: usize) -> bool {
        let (y, x) = (y as isize, x as isize);
        y >= self.top
            && y < self.top + self.height as isize
            && x >= self.left
            && x < self.left + self.width as isize
    }
}

/// The transforms drawn for one image; `None` where the policy leaves it out or the
/// image's coin (probability `p`) said no.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SampleAug {
    /// Added to every value, in [−0.5, 0.5).
    pub brightness: Option<f32>,
    /// Scales each pixel's distance from its mean over channels, in [0, 2).
    pub saturation: Option<f32>,
    /// Scales each value's distance from the image's mean, in [0.5, 1.5).
    pub contrast: Option<f32>,
    /// Content moves by `(dy, dx)`: `out[y][x] = in[y − dy][x − dx]`, zero where that lies
    /// outside; each within ±side/8.
    pub translation: Option<(isize, isize)>,
    pub cutout: Option<Cutout>,
}

/// A seed for the augmentations of one step: mixes (run seed, step, salt) so that the D
/// step, the G step and the real/fake halves (different salts) draw independently, and a
/// resumed run draws what the uninterrupted one drew.
pub fn seed_for(run_seed: u64, step: u64, salt: u64) -> u64 {
    // SplitMix64's finaliser over a combination of the three: neighbouring steps and salts
    // give unrelated seeds.
    let mut z = run_seed
        ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn check_p(p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::Msg(format!(
            "augmentation probability must be in [0, 1], got {p}"
        )));
    }
    Ok(())
}

/// Draws the transforms for `n` images of `h`×`w` pixels: what [`augment`] applies.
pub fn draws(
    n: usize,
    (h, w): (usize, usize),
    policy: &Policy,
    p: f64,
    seed: u64,
) -> Result<Vec<SampleAug>> {
    check_p(p)?;
    if h == 0 || w == 0 {
        return Err(Error::Msg(format!("cannot augment {h}x{w} images")));
    }
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    // The reference: shifts of up to side/8 each way, a cutout of side/2 whose centre lies
    // in 0..side (0..=side for an even cutout), the square from centre − size/2.
    let (sy, sx) = ((h / 8) as i64, (w / 8) as i64);
    let (ch, cw) = (h / 2, w / 2);
    let out = (0..n)
        .map(|_| {
            let gate: [f64; 5] = std::array::from_fn(|_| rng.random());
            let b = rng.random::<f32>() - 0.5;
            let s = rng.random::<f32>() * 2.0;
            let k = rng.random::<f32>() + 0.5;
            let dy = rng.random_range(-sy..=sy) as isize;
            let dx = rng.random_range(-sx..=sx) as isize;
            let cy = rng.random_range(0..(h + 1 - ch % 2) as u64) as isize;
            let cx = rng.random_range(0..(w + 1 - cw % 2) as u64) as isize;
            let on = |i: usize, enabled: bool| enabled && gate[i] < p;
            SampleAug {
                brightness: on(0, policy.color).then_some(b),
                saturation: on(1, policy.color).then_some(s),
                contrast: on(2, policy.color).then_some(k),
                translation: on(3, policy.translation).then_some((dy, dx)),
                cutout: (on(4, policy.cutout) && ch > 0 && cw > 0).then_some(Cutout {
                    top: cy - (ch / 2) as isize,
                    left: cx - (cw / 2) as isize,
                    height: ch,
                    width: cw,
                }),
            }
        })
        .collect();
    Ok(out)
}

/// DiffAugment `x` (`[N, C, H, W]`, values in [−1, 1]): each transform of `policy` is
/// applied to each image with probability `p`, all draws from `seed`. Differentiable with
/// respect to `x`. With `p = 0` or an empty policy it returns `x` itself.
pub fn augment(x: &Tensor, policy: &Policy, p: f64, seed: u64) -> Result<Tensor> {
    augment_rows(x, policy, p, seed, 0, x.dim(0)?)
}

/// [`augment`] for rows `first_row..` of a batch of `batch` images: the transforms one
/// process draws for those rows (a rank of several holds only its rows).
pub fn augment_rows(
    x: &Tensor,
    policy: &Policy,
    p: f64,
    seed: u64,
    first_row: usize,
    batch: usize,
) -> Result<Tensor> {
    check_p(p)?;
    if p == 0.0 || policy.is_empty() {
        return Ok(x.clone());
    }
    let (n, _, h, w) = x.dims4()?;
    let all = draws(batch, (h, w), policy, p, seed)?;
    let mine = all.get(first_row..first_row + n).ok_or_else(|| {
        Error::Msg(format!(
            "rows {first_row}..{} of a batch of {batch}",
            first_row + n
        ))
    })?;
    apply(x, mine)
}

/// Per-image factors as a `[N, 1, 1, 1]` tensor, `none` where the image has no transform.
fn factors(
    x: &Tensor,
    draws: &[SampleAug],
    pick: impl Fn(&SampleAug) -> Option<f32>,
    none: f32,
) -> Result<Option<Tensor>> {
    if draws.iter().all(|d| pick(d).is_none()) {
        return Ok(None);
    }
    let v: Vec<f32> = draws.iter().map(|d| pick(d).unwrap_or(none)).collect();
    let t = Tensor::from_vec(v, (draws.len(), 1, 1, 1), x.device())?.to_dtype(x.dtype())?;
    Ok(Some(t))
}

/// `x·k + mean·(1 − k)`, the reference's `(x − mean)·k + mean` written so that an image
/// with `k = 1` comes out with exactly its own values.
fn blend_with_mean(x: &Tensor, mean: &Tensor, k: &Tensor) -> Result<Tensor> {
    let one_minus = k.affine(-1.0, 1.0)?;
    x.broadcast_mul(k)?
        .broadcast_add(&mean.broadcast_mul(&one_minus)?)
}

/// Applies drawn transforms (one per image of `x`, `[N, C, H, W]`). Transforms no image
/// drew are skipped, and images without a transform keep their values.
pub fn apply(x: &Tensor, draws: &[SampleAug]) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if draws.len() != n {
        return Err(Error::Msg(format!(
            "{} augmentation draws for a batch of {n}",
            draws.len()
        )));
    }
    let mut x = x.clone();
    if let Some(b) = factors(&x, draws, |d| d.brightness, 0.0)? {
        x = x.broadcast_add(&b)?;
    }
    if let Some(s) = factors(&x, draws, |d| d.saturation, 1.0)? {
        let mean = x.mean_keepdim(1)?;
        x = blend_with_mean(&x, &mean, &s)?;
    }
    if let Some(k) = factors(&x, draws, |d| d.contrast, 1.0)? {
        let mean = x.flatten_from(1)?.mean_keepdim(1)?.reshape((n, 1, 1, 1))?;
        x = blend_with_mean(&x, &mean, &k)?;
    }
    if draws
        .iter()
        .any(|d| d.translation.is_some() || d.cutout.is_some())
    {
        x = geometry(&x, draws, (n, c, h, w))?;
    }
    Ok(x)
}

/// Translation and cutout as one gather: every output value reads one input value or a
/// zero appended after the input. `index_select` backpropagates (as an index-add) on every
/// device, and one gather replaces the reference's padded gather plus mask multiply.
fn geometry(
    x: &Tensor,
    draws: &[SampleAug],
    (n, c, h, w): (usize, usize, usize, usize),
) -> Result<Tensor> {
    let total = n * c * h * w;
    let zero = u32::try_from(total)
        .map_err(|_| Error::Msg(format!("batch of {total} values is too large to augment")))?;
    let mut index = Vec::with_capacity(total);
    for (i, d) in draws.iter().enumerate() {
        let (dy, dx) = d.translation.unwrap_or((0, 0));
        for ch in 0..c {
            let plane = (i * c + ch) * h * w;
            for y in 0..h {
                let sy = y as isize - dy;
                for x in 0..w {
                    let sx = x as isize - dx;
                    let cut = d.cutout.is_some_and(|r| r.contains(y, x));
                    let inside = sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize;
                    index.push(if cut || !inside {
                        zero
                    } else {
                        (plane + sy as usize * w + sx as usize) as u32
                    });
                }
            }
        }
    }
    let index = Tensor::from_vec(index, total, x.device())?;
    let padded = Tensor::cat(
        &[&x.flatten_all()?, &Tensor::zeros(1, x.dtype(), x.device())?],
        0,
    )?;
    padded.index_select(&index, 0)?.reshape((n, c, h, w))
}

/// ADA's adaptive augmentation probability (Karras et al. 2020): every `interval` steps,
/// r_t = E[sign(D(real))] over those steps is compared with `target`; above it the
/// discriminator is overfitting the reals, so `p` rises, below it `p` falls, by
/// `speed · interval`, clamped to [0, 1].
///
/// `speed` is the change of `p` per step: `batch / images_to_full`, where ADA's
/// `images_to_full` is 500,000, easel's default ([`AdaptiveP::IMAGES_TO_FULL`], sketch key
/// `ada_images`). At easel's run lengths (~10⁵ images) `p` then stays below ~0.4. A speed
/// scaled to the run (5,000 images, easel's first default) drove `p` to 1 within ~130
/// steps, because D is sure of real pictures from the start, and the generator learned
/// more slowly: held-out SWD 94–103 against 64–81 at ADA's speed after 1000 steps on
/// Oxygen icons (docs/own-pictures.md).
///
/// Plain fields with serde, so the trainer can checkpoint it and resume exactly.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdaptiveP {
    pub p: f64,
    pub target: f64,
    pub speed: f64,
    pub interval: u64,
    /// Sum of the per-step sign means since the last adjustment.
    pub sum: f64,
    /// Steps summed in `sum`.
    pub steps: u64,
    /// r_t of the last adjustment, for logging.
    pub last_rt: Option<f64>,
}

impl AdaptiveP {
    /// ADA's target for E[sign(D(real))].
    pub const TARGET: f64 = 0.6;
    /// ADA adjusts every 4 steps.
    pub const INTERVAL: u64 = 4;
    /// Images over which `p` may go from 0 to 1 by default: ADA's 500,000.
    pub const IMAGES_TO_FULL: f64 = 500_000.0;
    /// What runs used before `ada_images` existed (their spec.json has no such field).
    pub const IMAGES_TO_FULL_BEFORE: f64 = 5_000.0;

    /// Starts at p = 0 with ADA's target and interval, for batches of `batch` images, so
    /// that `p` may cross [0, 1] in `images_to_full` images.
    pub fn new(batch: usize, images_to_full: f64) -> Self {
        Self::with_speed(batch.max(1) as f64 / images_to_full.max(1.0))
    }

    pub fn with_speed(speed: f64) -> Self {
        AdaptiveP {
            p: 0.0,
            target: Self::TARGET,
            speed,
            interval: Self::INTERVAL,
            sum: 0.0,
            steps: 0,
            last_rt: None,
        }
    }

    /// Feeds one step's mean of sign(D(real logits)). Every `interval` steps adjusts `p`
    /// and returns the r_t it used. A value that is not finite is ignored.
    pub fn update(&mut self, sign_real_mean: f64) -> Option<f64> {
        if !sign_real_mean.is_finite() {
            return None;
        }
        self.sum += sign_real_mean;
        self.steps += 1;
        if self.steps < self.interval.max(1) {
            return None;
        }
        let rt = self.sum / self.steps as f64;
        // sign(0) = 0 as in ADA: exactly on target leaves p alone.
        let dir = if rt > self.target {
            1.0
        } else if rt < self.target {
            -1.0
        } else {
            0.0
        };
        self.p = (self.p + dir * self.speed * self.steps as f64).clamp(0.0, 1.0);
        self.sum = 0.0;
        self.steps = 0;
        self.last_rt = Some(rt);
        Some(rt)
    }
}

/// Converts a discriminator's real logits to the mean of their signs (r_t's per-step
/// term).
pub fn sign_mean(real_logits: &Tensor) -> Result<f64> {
    let s = real_logits
        .to_dtype(DType::F32)?
        .flatten_all()?
        .sign()?
        .mean_all()?
        .to_scalar::<f32>()?;
    Ok(s as f64)
}

/// Flips each image of `x` (`[N, C, H, W]`) left–right with probability ½, drawn from
/// `seed`: `mirror: true`, for real images (the data set seen twice as wide).
pub fn mirror(x: &Tensor, seed: u64) -> Result<Tensor> {
    mirror_rows(x, seed, 0)
}

/// [`mirror`] for the rows of a batch from `first_row` on (a rank's part of it).
pub fn mirror_rows(x: &Tensor, seed: u64, first_row: usize) -> Result<Tensor> {
    let (n, _, _, w) = x.dims4()?;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let flip: Vec<f32> = (0..first_row + n)
        .map(|_| if rng.random::<bool>() { 1.0 } else { 0.0 })
        .skip(first_row)
        .collect();
    let reversed: Vec<u32> = (0..w as u32).rev().collect();
    let flipped = x.index_select(&Tensor::from_vec(reversed, w, x.device())?, 3)?;
    let m = Tensor::from_vec(flip, (n, 1, 1, 1), x.device())?.to_dtype(x.dtype())?;
    blend_with_mean(&flipped, x, &m)
}
