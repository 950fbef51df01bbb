//! PyTorch (`.pth`) and safetensors weights of the two published upscaler architectures,
//! laid out into a [`Graph`]. The architecture, block count, widths and scale are read
//! from the keys and shapes:
//!
//! - RRDBNet (ESRGAN, Real-ESRGAN x4plus and anime): BasicSR names (`conv_first`,
//!   `body.N.rdbM.convK`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`, `conv_last`) or the
//!   2018 ESRGAN release's (`model.0`, `model.1.sub.N.RDBM.convK.0`, …, `model.10`);
//!   x2 and x1 variants (pixel-unshuffled input) too.
//! - SRVGGNetCompact (realesr-animevideov3, realesr-general): `body.N`, PReLU activations.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};

use super::graph::{fuse, Graph, Node, Op};

/// The LeakyReLU slope of RRDBNet.
const LEAKY: f32 = 0.2;
/// Residual scaling inside RRDBNet's dense blocks.
const RESIDUAL: f32 = 0.2;

/// Reads a `.pth` (the whole state dict, or the one under `params_ema` / `params`) or a
/// `.safetensors` file.
pub(super) fn load(path: &Path) -> Result<Graph> {
    let what = path.display().to_string();
    let tensors = read(path)?;
    from_tensors(tensors, &what)
}

fn read(path: &Path) -> Result<HashMap<String, Tensor>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let list: Vec<(String, Tensor)> = if ext == "safetensors" {
        candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("{} is not a readable safetensors file", path.display()))?
            .into_iter()
            .collect()
    } else {
        // Real-ESRGAN's releases keep the weights under `params_ema` (or `params`).
        let mut found = None;
        let mut first_err = None;
        for key in [Some("params_ema"), Some("params"), None] {
            match candle_core::pickle::read_all_with_key(path, key) {
                Ok(t) if !t.is_empty() => {
                    found = Some(t);
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match found {
            Some(t) => t,
            None => bail!(
                "{} is not a PyTorch state dict easel can read{} (a zip-format torch.save of the weights, as torch >= 1.6 writes)",
                path.display(),
                first_err.map(|e| format!(": {e}")).unwrap_or_default()
            ),
        }
    };
    let mut map = HashMap::new();
    for (k, t) in list {
        let k = k.strip_prefix("module.").unwrap_or(&k).to_string();
        map.insert(k, t.to_dtype(DType::F32)?);
    }
    Ok(map)
}

/// Builds the graph of whichever architecture the names describe.
pub(crate) fn from_tensors(mut t: HashMap<String, Tensor>, what: &str) -> Result<Graph> {
    if t.contains_key("model.0.weight") && t.contains_key("model.1.sub.0.RDB1.conv1.0.weight") {
        t = rename_esrgan_2018(t);
    }
    let (mut nodes, mut output) = if t.contains_key("conv_first.weight") {
        rrdbnet(&t, what)?
    } else if t.contains_key("body.0.weight") {
        srvgg(&t, what)?
    } else {
        let mut keys: Vec<&String> = t.keys().collect();
        keys.sort();
        keys.truncate(6);
        bail!(
            "{what}: not an ESRGAN/Real-ESRGAN network (RRDBNet or SRVGGNetCompact); its first keys are {keys:?}"
        );
    };
    nodes = fuse(nodes, &mut output);
    Graph::new(nodes, output, 3, what)
}

/// The 2018 ESRGAN release's names, in BasicSR's.
fn rename_esrgan_2018(t: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let blocks = (0..)
        .take_while(|i| t.contains_key(&format!("model.1.sub.{i}.RDB1.conv1.0.weight")))
        .count();
    t.into_iter()
        .map(|(k, v)| {
            let (stem, leaf) = k.rsplit_once('.').unwrap_or((&k, ""));
            let new = match stem {
                "model.0" => "conv_first".to_string(),
                "model.3" => "conv_up1".to_string(),
                "model.6" => "conv_up2".to_string(),
                "model.8" => "conv_hr".to_string(),
                "model.10" => "conv_last".to_string(),
                s if s == format!("model.1.sub.{blocks}") => "conv_body".to_string(),
                s => match s.strip_prefix("model.1.sub.") {
                    // N.RDBm.convk.0 → body.N.rdbm.convk
                    Some(rest) => format!(
                        "body.{}",
                        rest.trim_end_matches(".0").replace(".RDB", ".rdb")
                    ),
                    None => s.to_string(),
                },
            };
            (format!("{new}.{leaf}"), v)
        })
        .collect()
}

/// Appends nodes and hands out value ids (0 is the input).
struct Builder<'a> {
    t: &'a HashMap<String, Tensor>,
    what: &'a str,
    nodes: Vec<Node>,
}

impl Builder<'_> {
    fn push(&mut self, name: &str, op: Op, inputs: Vec<usize>) -> usize {
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs,
        });
        self.nodes.len()
    }

    fn tensor(&self, key: &str) -> Result<Tensor> {
        self.t
            .get(key)
            .cloned()
            .with_context(|| format!("{}: no tensor {key}", self.what))
    }

    fn conv(&mut self, name: &str, x: usize, leaky: bool) -> Result<usize> {
        let weight = self.tensor(&format!("{name}.weight"))?;
        let (cout, _, k, _) = weight
            .dims4()
            .with_context(|| format!("{}: {name}.weight", self.what))?;
        let bias = match self.t.get(&format!("{name}.bias")) {
            Some(b) => b.clone(),
            None => Tensor::zeros(cout, DType::F32, &Device::Cpu)?,
        };
        let slopes = leaky.then(|| vec![LEAKY; cout].into());
        Ok(self.push(
            name,
            Op::Conv {
                weight,
                bias,
                padding: k / 2,
                slopes,
                packed: None,
                upsample: 1,
            },
            vec![x],
        ))
    }
}

fn count(t: &HashMap<String, Tensor>, f: impl Fn(usize) -> String) -> usize {
    (0..).take_while(|i| t.contains_key(&f(*i))).count()
}

fn rrdbnet(t: &HashMap<String, Tensor>, what: &str) -> Result<(Vec<Node>, usize)> {
    let mut b = Builder {
        t,
        what,
        nodes: vec![],
    };
    let in_ch = b.tensor("conv_first.weight")?.dim(1)?;
    let blocks = count(t, |i| format!("body.{i}.rdb1.conv1.weight"));
    ensure!(blocks > 0, "{what}: RRDBNet without body.0.rdb1.conv1");
    // BasicSR's RRDBNet unshuffles x2 inputs into 12 channels and x1 inputs into 48.
    let mut x = 0;
    match in_ch {
        3 => {}
        12 => x = b.push("pixel_unshuffle", Op::PixelUnshuffle(2), vec![0]),
        48 => x = b.push("pixel_unshuffle", Op::PixelUnshuffle(4), vec![0]),
        c => bail!("{what}: conv_first takes {c} channels (3, 12 or 48 expected)"),
    }
    let fea = b.conv("conv_first", x, false)?;
    let mut x = fea;
    for i in 0..blocks {
        let rrdb_in = x;
        for r in 1..=3 {
            let p = format!("body.{i}.rdb{r}");
            let mut feats = vec![x];
            for c in 1..=4 {
                let cat = if feats.len() == 1 {
                    x
                } else {
                    b.push(&format!("{p}.cat{c}"), Op::Concat, feats.clone())
                };
                let y = b.conv(&format!("{p}.conv{c}"), cat, true)?;
                feats.push(y);
            }
            let cat = b.push(&format!("{p}.cat5"), Op::Concat, feats);
            let x5 = b.conv(&format!("{p}.conv5"), cat, false)?;
            x = b.push(
                &format!("{p}.residual"),
                Op::Sum(vec![RESIDUAL, 1.0]),
                vec![x5, x],
            );
        }
        x = b.push(
            &format!("body.{i}.residual"),
            Op::Sum(vec![RESIDUAL, 1.0]),
            vec![x, rrdb_in],
        );
    }
    let body = b.conv("conv_body", x, false)?;
    let mut x = b.push("trunk", Op::Sum(vec![1.0, 1.0]), vec![fea, body]);
    for up in ["conv_up1", "conv_up2"] {
        let u = b.push(&format!("{up}.upsample"), Op::Nearest(2), vec![x]);
        x = b.conv(up, u, true)?;
    }
    let hr = b.conv("conv_hr", x, true)?;
    let out = b.conv("conv_last", hr, false)?;
    Ok((b.nodes, out))
}

fn srvgg(t: &HashMap<String, Tensor>, what: &str) -> Result<(Vec<Node>, usize)> {
    let mut b = Builder {
        t,
        what,
        nodes: vec![],
    };
    let layers = count(t, |i| format!("body.{i}.weight"));
    if t.keys()
        .any(|k| k.starts_with(&format!("body.{}.", layers + 1)))
    {
        bail!("{what}: SRVGGNetCompact without PReLU weights (its ReLU and LeakyReLU variants are not supported)");
    }
    let mut x = 0;
    for i in 0..layers {
        let key = format!("body.{i}.weight");
        let w = b.tensor(&key)?;
        x = match w.rank() {
            4 => b.conv(&format!("body.{i}"), x, false)?,
            1 => {
                let slopes: Vec<f32> = w.to_vec1()?;
                b.push(&format!("body.{i}"), Op::Prelu(slopes.into()), vec![x])
            }
            r => bail!("{what}: {key} has rank {r}, neither a convolution nor a PReLU"),
        };
    }
    let last = b.tensor(&format!("body.{}.weight", layers - 1))?;
    let out_ch = last.dim(0)?;
    let r = (1..=8).find(|r| 3 * r * r == out_ch).with_context(|| {
        format!("{what}: the last layer makes {out_ch} channels, not 3·r² for a scale r")
    })?;
    let shuffled = b.push("pixel_shuffle", Op::PixelShuffle(r), vec![x]);
    let base = b.push("upsample", Op::Nearest(r), vec![0]);
    let out = b.push("residual", Op::Sum(vec![1.0, 1.0]), vec![shuffled, base]);
    Ok((b.nodes, out))
}
