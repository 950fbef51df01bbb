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

/// Hides the fitting progress bar (the studio owns the terminal).
pub static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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

/// The fitted network for a sketch with `fit`, training (with a progress bar on a
/// terminal) on first use.
pub fn fitted_network(spec: &CppnSpec, target: &FitSpec) -> Result<Network> {
    let k = key(spec, target);
    if let Some(done) = lock().get(&k) {
        return done.clone().map_err(anyhow::Error::msg);
    }
    let bar = indicatif::ProgressBar::new(target.steps as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "fitting {bar:30} {pos}/{len} steps  loss {msg}  eta {eta}",
        )
        .expect("template"),
    );
    if QUIET.load(std::sync::atomic::Ordering::Relaxed)
        || !std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let result = fit(spec, target, &mut |step, loss| {
        if step % 10 == 0 {
            bar.set_position(step as u64);
            bar.set_message(format!("{loss:.5}  PSNR {:.1} dB", psnr(loss as f64)));
        }
    });
    bar.finish_and_clear();
    let result = result
        .map(|(net, report)| {
            if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
                let held = report
                    .psnr_held_out
                    .map(|p| format!(" ({p:.1} dB on the 3/4 of pixels it did not train on)"))
                    .unwrap_or_default();
                eprintln!(
                    "fitted {} in {} steps: PSNR {:.1} dB{held}",
                    target.image_path.display(),
                    target.steps,
                    report.psnr
                );
            }
            net
        })
        .map_err(|e| format!("fitting to {} failed: {e:#}", target.image_path.display()));
    lock().insert(k, result.clone());
    result.map_err(anyhow::Error::msg)
}
