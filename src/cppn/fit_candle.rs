//! Fitting with Candle (autograd, `AdamW` with weight decay 0): the trainer on a CUDA
//! GPU. On the CPU fits use the fused trainer in `train.rs`, which computes the same
//! loss and step without Candle's per-op overhead; this one stays its reference (tests
//! compare the two).

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use super::fit::{psnr, FitReport};
use super::net::{Dense, Network};
use super::train::FitData;

/// Trains `start` on `data` on `dev`: full-batch MSE over the training rows, `steps`
/// Adam steps at `lr`; `progress(step, loss)` after every step.
pub fn fit_candle(
    start: &Network,
    data: &FitData,
    steps: usize,
    lr: f64,
    dev: &Device,
    progress: &mut dyn FnMut(usize, f32),
) -> Result<(Network, FitReport)> {
    let n = data.rows();
    let x = Tensor::from_slice(&data.inputs, (n, data.n_in), dev)?;
    let y = Tensor::from_slice(&data.target, (n, data.channels), dev)?;
    let rows = |r: &[u32]| Tensor::from_slice(r, r.len(), dev);
    let (x_train, y_train) = if data.held_rows.is_empty() {
        (x.clone(), y.clone())
    } else {
        let idx = rows(&data.train_rows)?;
        (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?)
    };
    let vars = variables(start, dev)?;
    let params = ParamsAdamW {
        lr,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = AdamW::new(vars.clone(), params)?;
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        let loss = forward(start, &vars, &x_train)?
            .sub(&y_train)?
            .sqr()?
            .mean_all()?;
        opt.backward_step(&loss)?;
        let l = loss.to_scalar::<f32>()?;
        if !l.is_finite() {
            bail!("fitting diverged at step {step} (loss {l}); lower fit.lr");
        }
        losses.push(l);
        progress(step, l);
    }
    let mse = |x: &Tensor, y: &Tensor| -> Result<f64> {
        Ok(forward(start, &vars, x)?
            .clamp(0f32, 1f32)?
            .sub(y)?
            .sqr()?
            .mean_all()?
            .to_scalar::<f32>()? as f64)
    };
    let final_mse = mse(&x, &y)?;
    let psnr_held_out = if data.held_rows.is_empty() {
        None
    } else {
        let idx = rows(&data.held_rows)?;
        let (x, y) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
        Some(psnr(mse(&x, &y)?))
    };
    Ok((
        network(start, &vars)?,
        FitReport {
            losses,
            psnr: psnr(final_mse),
            psnr_held_out,
        },
    ))
}

/// The training loss over every row of `data` and its gradient (shaped as a network),
/// by Candle's autograd: the reference the fused trainer is tested against.
pub fn loss_and_gradients(net: &Network, data: &FitData) -> Result<(f32, Network)> {
    let dev = Device::Cpu;
    let x = Tensor::from_slice(&data.inputs, (data.rows(), data.n_in), &dev)?;
    let y = Tensor::from_slice(&data.target, (data.rows(), data.channels), &dev)?;
    let vars = variables(net, &dev)?;
    let loss = forward(net, &vars, &x)?.sub(&y)?.sqr()?.mean_all()?;
    let grads = loss.backward()?;
    let mut layers = Vec::with_capacity(net.layers.len());
    for (k, l) in net.layers.iter().enumerate() {
        let grad = |v: &Var| -> Result<Vec<f32>> {
            match grads.get(v.as_tensor()) {
                Some(g) => Ok(g.flatten_all()?.to_vec1()?),
                None => bail!("no gradient for layer {}", k + 1),
            }
        };
        layers.push(Dense {
            w: grad(&vars[2 * k])?,
            b: grad(&vars[2 * k + 1])?,
            ..l.clone()
        });
    }
    Ok((loss.to_scalar::<f32>()?, Network { layers }))
}

/// Each layer's `w` (`[input][output]`) and `b`, as trainable variables.
fn variables(net: &Network, dev: &Device) -> Result<Vec<Var>> {
    let mut vars = Vec::new();
    for l in &net.layers {
        vars.push(Var::from_tensor(&Tensor::from_slice(
            &l.w,
            (l.inputs, l.outputs),
            dev,
        )?)?);
        vars.push(Var::from_tensor(&Tensor::from_slice(
            &l.b, l.outputs, dev,
        )?)?);
    }
    Ok(vars)
}

/// The network's outputs in colour units: [−1, 1]-ranged outputs are mapped to [0, 1]
/// as the renderer maps them.
fn forward(net: &Network, vars: &[Var], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for (k, l) in net.layers.iter().enumerate() {
        h = h
            .matmul(vars[2 * k].as_tensor())?
            .broadcast_add(vars[2 * k + 1].as_tensor())?;
        h = l.activation.tensor(&h)?;
    }
    match net.layers.last().map(|l| l.activation) {
        Some(a) if a.ranges_over_minus_one_to_one() => Ok(h.affine(0.5, 0.5)?),
        _ => Ok(h),
    }
}

fn network(like: &Network, vars: &[Var]) -> Result<Network> {
    let layers = like
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
    Ok(Network { layers })
}
