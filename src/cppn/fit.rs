//! Fitting ("super-sampling"): train the CPPN (Adam; `train.rs` on the CPU, Candle on a
//! GPU) to reproduce an image from its pixel coordinates, then render it at any size.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Result};
use image::RgbImage;

use super::net::{Activation, Network};
use super::CppnSpec;

/// `fit: #{ image: "…", steps: …, lr: …, size: … }` in a CPPN sketch.
#[derive(Debug, Clone)]
pub struct FitSpec {
    pub image_path: PathBuf,
    /// The target, resized to the training resolution.
    pub target: Arc<RgbImage>,
    pub steps: usize,
    pub lr: f64,
    /// Tancik et al.'s protocol: train on the pixels at even (x, y) only (a regular
    /// quarter), and report PSNR on the other three quarters too — how well the network
    /// fills in detail it never saw, not just how well it memorises.
    pub hold_out: bool,
    /// Where to fit (`easel render --device`); the renderer itself always runs on the CPU.
    pub device: crate::device::DeviceArg,
}

#[derive(Debug, Clone)]
pub struct FitReport {
    /// Mean squared error per step, in [0, 1]² units.
    pub losses: Vec<f32>,
    /// PSNR of the final fit at training resolution, in dB, over all pixels.
    pub psnr: f64,
    /// With `hold_out`: PSNR over the pixels it did not train on.
    pub psnr_held_out: Option<f64>,
}

impl FitReport {
    /// One line for people: "fitted t.png in 600 steps: PSNR 31.2 dB (…)".
    pub fn summary(&self, fit: &FitSpec) -> String {
        let held = self
            .psnr_held_out
            .map(|p| format!(" ({p:.1} dB on the 3/4 of pixels it did not train on)"))
            .unwrap_or_default();
        format!(
            "fitted {} in {} steps: PSNR {:.1} dB{held}",
            fit.image_path.display(),
            fit.steps,
            self.psnr
        )
    }
}

pub fn psnr(mse: f64) -> f64 {
    10.0 * (1.0 / mse.max(1e-12)).log10()
}

/// Trains the sketch's network (starting from its seeded weights) on the target image.
/// `progress(step, loss)` is called after every step.
pub fn fit(
    spec: &CppnSpec,
    fit: &FitSpec,
    progress: &mut dyn FnMut(usize, f32),
) -> Result<(Network, FitReport)> {
    let dev = fit.device.open()?;
    let start = spec.network();
    for l in &start.layers {
        if l.activation == Activation::Sign {
            bail!("sign has no gradient, so a network using it cannot be fitted; use tanh instead");
        }
    }
    // Train at the target's resolution with the renderer's own coordinates, so the fitted
    // network renders the image at any size.
    let data = super::train::FitData::new(spec, fit)?;
    if dev.is_cpu() {
        // The fused trainer: Candle's per-op overhead dominates on matrices this small.
        super::train::fit_fused(&start, &data, fit.steps, fit.lr, progress)
    } else {
        super::fit_candle::fit_candle(&start, &data, fit.steps, fit.lr, &dev, progress)
    }
}

/// Fits of this process, by sketch content, so re-rendering a fitted sketch (another
/// size, a favourite) does not train again. A fit that failed is kept as its error: asking
/// again gives the error at once instead of training (and failing) forever.
type Fits = HashMap<u64, std::result::Result<Network, String>>;

fn cache() -> &'static Mutex<Fits> {
    static CACHE: OnceLock<Mutex<Fits>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, Fits> {
    // A panic mid-insert leaves the map whole: poisoning carries no meaning here.
    cache().lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything that decides the fitted network: the whole spec but the canvas size and
/// the animation (render-time choices), and the fit's settings and target pixels.
fn key(spec: &CppnSpec, fit: &FitSpec) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let network = CppnSpec {
        width: 0,
        height: 0,
        animation: super::Animation {
            frames: 0,
            fps: 0.0,
            radius: 0.0,
        },
        fit: None,
        ..spec.clone()
    };
    format!("{network:?}").hash(&mut h);
    (fit.steps, fit.lr.to_bits(), fit.hold_out).hash(&mut h);
    fit.target.dimensions().hash(&mut h);
    fit.target.as_raw().hash(&mut h);
    h.finish()
}

/// Whether this process has already fitted the sketch's network, or tried and failed
/// (either way, asking for it returns at once).
pub fn is_fitted(spec: &CppnSpec, target: &FitSpec) -> bool {
    lock().contains_key(&key(spec, target))
}

/// The fitted network for a sketch with `fit`, training on first use. It reports
/// nothing: a caller that shows progress fits first with [`fitted`].
pub fn fitted_network(spec: &CppnSpec, target: &FitSpec) -> Result<Network> {
    fitted(spec, target, &mut |_, _| {}).map(|(net, _)| net)
}

/// The fitted network, training on first use with `progress(step, loss)` after every
/// step; the report comes back when this call trained it. A fit this process has done
/// (or tried and failed) returns at once.
pub fn fitted(
    spec: &CppnSpec,
    target: &FitSpec,
    progress: &mut dyn FnMut(usize, f32),
) -> Result<(Network, Option<FitReport>)> {
    let k = key(spec, target);
    if let Some(done) = lock().get(&k) {
        return done
            .clone()
            .map(|net| (net, None))
            .map_err(anyhow::Error::msg);
    }
    let (cached, report) = match fit(spec, target, progress) {
        Ok((net, report)) => (Ok(net), Some(report)),
        Err(e) => (
            Err(format!(
                "fitting to {} failed: {e:#}",
                target.image_path.display()
            )),
            None,
        ),
    };
    lock().insert(k, cached.clone());
    cached.map(|net| (net, report)).map_err(anyhow::Error::msg)
}
