//! Fitting ("super-sampling"): train the CPPN with Candle (autograd, Adam) to reproduce
//! an image from its pixel coordinates, then render the fitted network at any size.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use image::RgbImage;

use super::net::{Activation, Dense, Network};
use super::{CppnSpec, OutputMode};

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
    let (tw, th) = fit.target.dimensions();
    // Train at the target's resolution with the renderer's own coordinates, so the fitted
    // network renders the image at any size.
    let mut probe = spec.clone();
    (probe.width, probe.height) = (tw, th);
    let coords = super::render::input_coordinates(&probe);
    let z = spec.z();
    let n = (tw * th) as usize;
    let n_in = start.inputs();
    let mut inputs = Vec::with_capacity(n * n_in);
    for c in coords.chunks_exact(spec.inputs.coordinate_count()) {
        inputs.extend_from_slice(c);
        inputs.extend_from_slice(&z);
    }
    let x = Tensor::from_vec(inputs, (n, n_in), &dev)?;
    let channels = spec.output.outputs();
    let target: Vec<f32> = fit
        .target
        .pixels()
        .flat_map(|p| {
            let [r, g, b] = p.0.map(|v| v as f32 / 255.0);
            match channels {
                1 => vec![0.299 * r + 0.587 * g + 0.114 * b],
                _ => vec![r, g, b],
            }
        })
        .collect();
    if !matches!(spec.output, OutputMode::Rgb | OutputMode::Gray) {
        bail!("fitting works with output \"rgb\" or \"gray\"");
    }
    let y = Tensor::from_vec(target, (n, channels), &dev)?;
    // The rows trained on, and (with hold_out) the rest.
    let (train_rows, held_rows): (Vec<u32>, Vec<u32>) = (0..n as u32).partition(|&i| {
        let (px, py) = (i % tw, i / tw);
        !fit.hold_out || (px % 2 == 0 && py % 2 == 0)
    });
    let rows = |r: &[u32]| Tensor::from_slice(r, r.len(), &dev);
    let (x_train, y_train) = if fit.hold_out {
        let idx = rows(&train_rows)?;
        (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?)
    } else {
        (x.clone(), y.clone())
    };

    let mut vars = Vec::new();
    for l in &start.layers {
        vars.push(Var::from_tensor(&Tensor::from_slice(
            &l.w,
            (l.inputs, l.outputs),
            &dev,
        )?)?);
        vars.push(Var::from_tensor(&Tensor::from_slice(
            &l.b, l.outputs, &dev,
        )?)?);
    }
    let params = ParamsAdamW {
        lr: fit.lr,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = AdamW::new(vars.clone(), params)?;
    let forward = |vars: &[Var], x: &Tensor| -> Result<Tensor> {
        let mut h = x.clone();
        for (k, l) in start.layers.iter().enumerate() {
            h = h
                .matmul(vars[2 * k].as_tensor())?
                .broadcast_add(vars[2 * k + 1].as_tensor())?;
            h = l.activation.tensor(&h)?;
        }
        // The renderer maps [−1, 1]-ranged outputs to [0, 1]; train in the same units.
        match start.layers.last().map(|l| l.activation) {
            Some(a) if a.ranges_over_minus_one_to_one() => Ok(h.affine(0.5, 0.5)?),
            _ => Ok(h),
        }
    };
    let mut losses = Vec::with_capacity(fit.steps);
    for step in 0..fit.steps {
        let loss = forward(&vars, &x_train)?.sub(&y_train)?.sqr()?.mean_all()?;
        opt.backward_step(&loss)?;
        let l = loss.to_scalar::<f32>()?;
        if !l.is_finite() {
            bail!("fitting diverged at step {step} (loss {l}); lower fit.lr");
        }
        losses.push(l);
        progress(step, l);
    }
    let mse = |x: &Tensor, y: &Tensor| -> Result<f64> {
        Ok(forward(&vars, x)?
            .clamp(0f32, 1f32)?
            .sub(y)?
            .sqr()?
            .mean_all()?
            .to_scalar::<f32>()? as f64)
    };
    let final_mse = mse(&x, &y)?;
    let psnr_held_out = if fit.hold_out && !held_rows.is_empty() {
        let idx = rows(&held_rows)?;
        let (x, y) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
        Some(psnr(mse(&x, &y)?))
    } else {
        None
    };
    let layers = start
        .layers
        .iter()
        .enumerate()
        .map(|(k, l)| -> Result<Dense> {
            Ok(Dense {
                w: vars[2 * k]
                    .as_tensor()
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1()?,
                b: vars[2 * k + 1].as_tensor().to_vec1()?,
                ..l.clone()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((
        Network { layers },
        FitReport {
            losses,
            psnr: psnr(final_mse),
            psnr_held_out,
        },
    ))
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
