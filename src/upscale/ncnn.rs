//! ncnn models (`.param` text + `.bin` weights), as Real-ESRGAN ships its portable
//! networks. The layer types those networks use are read into a [`Graph`]: Input,
//! Convolution (with a fused LeakyReLU), Split, Concat, Eltwise (sum), BinaryOp (add),
//! Interp (nearest by whole factors, bicubic), PReLU and PixelShuffle. Anything else is an
//! error naming the file, line and layer.
//!
//! The `.bin` holds each layer's weights in `.param` order: a convolution's kernel is a
//! 4-byte tag (fp16 or fp32) then OIHW values (fp16 padded to 4 bytes); biases and PReLU
//! slopes are raw fp32. Reading must consume the file exactly.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};

use super::graph::{fuse, Graph, Node, Op};

const MAGIC: &str = "7767517";
const TAG_FP16: u32 = 0x0130_6B47;
const TAG_FP32: u32 = 0;

/// Reads `param` and the `.bin` beside it (same stem).
pub(super) fn load(param: &Path) -> Result<Graph> {
    let bin = param.with_extension("bin");
    let text = std::fs::read_to_string(param)
        .with_context(|| format!("cannot read the ncnn model {}", param.display()))?;
    let weights = std::fs::read(&bin).with_context(|| {
        format!(
            "cannot read {} (an ncnn .param needs its .bin beside it)",
            bin.display()
        )
    })?;
    parse(
        &text,
        &weights,
        &param.display().to_string(),
        &bin.display().to_string(),
    )
}

/// One layer's `k=v` parameters: numbers, or arrays for negative keys.
#[derive(Default)]
struct Params(HashMap<i32, Vec<f32>>);

impl Params {
    fn parse(fields: &[&str]) -> Result<Self> {
        let mut map = HashMap::new();
        for f in fields {
            let (k, v) = f
                .split_once('=')
                .with_context(|| format!("parameter {f:?} is not key=value"))?;
            let k: i32 = k.parse().with_context(|| format!("parameter key {k:?}"))?;
            let number = |s: &str| -> Result<f32> {
                s.parse::<f32>()
                    .with_context(|| format!("parameter {k} value {s:?}"))
            };
            if k <= -23300 {
                // Arrays: `-233xx=count,v1,v2,…` is parameter xx.
                let mut items = v.split(',');
                let n: usize = items
                    .next()
                    .unwrap_or("")
                    .parse()
                    .with_context(|| format!("array {k} count"))?;
                let vals = items.map(number).collect::<Result<Vec<_>>>()?;
                ensure!(
                    vals.len() == n,
                    "array parameter {k} says {n} values and has {}",
                    vals.len()
                );
                map.insert((-i64::from(k) - 23300) as i32, vals);
            } else {
                map.insert(k, vec![number(v)?]);
            }
        }
        Ok(Params(map))
    }

    fn get(&self, k: i32, default: f32) -> f32 {
        self.0
            .get(&k)
            .and_then(|v| v.first().copied())
            .unwrap_or(default)
    }

    fn int(&self, k: i32, default: i64) -> i64 {
        self.get(k, default as f32) as i64
    }

    /// A count or size: a whole number from 0 to 2³⁰ (a larger one is no real layer).
    fn count(&self, k: i32, default: i64) -> Result<usize> {
        let v = self.get(k, default as f32);
        ensure!(
            v >= 0.0 && v.fract() == 0.0 && v <= (1u32 << 30) as f32,
            "parameter {k}={v} is not a count"
        );
        Ok(v as usize)
    }

    fn array(&self, k: i32) -> Option<&[f32]> {
        self.0.get(&k).map(|v| v.as_slice())
    }
}

/// The `.bin`, read front to back.
struct Weights<'a> {
    data: &'a [u8],
    at: usize,
    file: &'a str,
}

impl Weights<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        ensure!(
            self.at.checked_add(n).is_some_and(|end| end <= self.data.len()),
            "{} ends at byte {} while reading {what} ({n} bytes from byte {}): the file is cut short or belongs to another .param",
            self.file,
            self.data.len(),
            self.at
        );
        let s = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn raw_f32(&mut self, n: usize, what: &str) -> Result<Vec<f32>> {
        let bytes = n.checked_mul(4).context("a layer size past any file")?;
        Ok(self
            .take(bytes, what)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// A tagged array of `n` values (convolution kernels).
    fn tagged(&mut self, n: usize, what: &str) -> Result<Vec<f32>> {
        let t = self.take(4, what)?;
        let tag = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        match tag {
            TAG_FP16 => {
                let bytes = self.take((2 * n).next_multiple_of(4), what)?;
                Ok(bytes[..2 * n]
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect())
            }
            TAG_FP32 => self.raw_f32(n, what),
            other => bail!(
                "{}: {what} is stored with tag {other:#010x}, which easel does not read (fp16 and fp32 only; quantised models are not supported)",
                self.file
            ),
        }
    }
}

fn parse(text: &str, bin: &[u8], param_file: &str, bin_file: &str) -> Result<Graph> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, magic) = lines
        .next()
        .with_context(|| format!("{param_file} is empty"))?;
    ensure!(
        magic.trim() == MAGIC,
        "{param_file} is not an ncnn .param file (its first line is {:?}, not {MAGIC})",
        magic.trim()
    );
    let (_, counts) = lines
        .next()
        .with_context(|| format!("{param_file}: no layer count line"))?;
    let declared: usize = counts
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{param_file}:2: expected \"LAYERS BLOBS\", got {counts:?}"))?;

    let mut weights = Weights {
        data: bin,
        at: 0,
        file: bin_file,
    };
    let mut blobs: HashMap<String, usize> = HashMap::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut input: Option<String> = None;
    let mut last_top = None;
    let mut layers = 0;
    for (ln, line) in lines {
        layers += 1;
        let at = |name: &str| format!("{param_file}:{}: layer {name}", ln + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            f.len() >= 4,
            "{param_file}:{}: expected \"TYPE NAME BOTTOMS TOPS …\", got {line:?}",
            ln + 1
        );
        let (kind, name) = (f[0], f[1]);
        let nb: usize = f[2].parse().with_context(|| at(name))?;
        let nt: usize = f[3].parse().with_context(|| at(name))?;
        ensure!(
            nb <= 1024 && nt <= 1024 && (nb >= 1 || kind == "Input"),
            "{}: {nb} inputs and {nt} outputs",
            at(name)
        );
        ensure!(
            f.len() >= 4 + nb + nt,
            "{}: names {nb} inputs and {nt} outputs but lists fewer",
            at(name)
        );
        let bottoms = &f[4..4 + nb];
        let tops = &f[4 + nb..4 + nb + nt];
        let p = Params::parse(&f[4 + nb + nt..]).with_context(|| at(name))?;
        let ins = bottoms
            .iter()
            .map(|b| {
                blobs.get(*b).copied().with_context(|| {
                    format!(
                        "{}: reads blob {b:?}, which no earlier layer makes",
                        at(name)
                    )
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let op = match kind {
            "Input" => {
                ensure!(input.is_none(), "{}: a second Input (easel runs one-input networks)", at(name));
                for t in tops {
                    blobs.insert(t.to_string(), 0);
                }
                input = Some(name.to_string());
                continue;
            }
            "Split" => {
                for t in tops {
                    blobs.insert(t.to_string(), ins[0]);
                }
                continue;
            }
            "Convolution" => {
                let cout = p.count(0, 0).with_context(|| at(name))?;
                let kw = p.count(1, 0).with_context(|| at(name))?;
                let kh = p.count(11, kw as i64).with_context(|| at(name))?;
                let (dil, stride) = (p.int(2, 1), p.int(3, 1));
                let pad = p.int(4, 0);
                let size = p.count(6, 0).with_context(|| at(name))?;
                ensure!(
                    dil == 1 && p.int(12, 1) == 1 && stride == 1 && p.int(13, 1) == 1,
                    "{}: dilation {dil} / stride {stride}: easel reads stride-1, undilated convolutions",
                    at(name)
                );
                ensure!(
                    kh == kw && pad >= 0 && [14, 15, 16].iter().all(|k| p.int(*k, pad) == pad),
                    "{}: only square kernels with the same padding on every side are supported",
                    at(name)
                );
                ensure!(cout > 0 && kw > 0 && kw <= 15 && size >= cout * kw * kh && size.is_multiple_of(cout * kw * kh), "{}: weight size {size} does not fit {cout} filters of {kw}x{kh}", at(name));
                let cin = size / (cout * kw * kh);
                let w = weights.tagged(size, &format!("the weights of layer {name}"))?;
                let b = if p.int(5, 0) != 0 {
                    weights.raw_f32(cout, &format!("the bias of layer {name}"))?
                } else {
                    vec![0.0; cout]
                };
                let slopes = match p.int(9, 0) {
                    0 => None,
                    1 => Some(vec![0.0; cout].into()),
                    2 => {
                        let a = p.array(10).and_then(|a| a.first().copied()).unwrap_or(0.0);
                        Some(vec![a; cout].into())
                    }
                    t => bail!("{}: fused activation type {t} is not supported (ReLU and LeakyReLU are)", at(name)),
                };
                Op::Conv {
                    weight: Tensor::from_vec(w, (cout, cin, kh, kw), &Device::Cpu)?,
                    bias: Tensor::from_vec(b, cout, &Device::Cpu)?,
                    padding: pad as usize,
                    slopes,
                    packed: None,
                    upsample: 1,
                }
            }
            "PReLU" => {
                let n = p.count(0, 1).with_context(|| at(name))?;
                Op::Prelu(weights.raw_f32(n, &format!("the slopes of layer {name}"))?.into())
            }
            "Concat" => {
                ensure!(p.int(0, 0) == 0, "{}: only channel concatenation (axis 0) is supported", at(name));
                Op::Concat
            }
            "Eltwise" => {
                ensure!(p.int(0, 0) == 1, "{}: only Eltwise sum (op 1) is supported", at(name));
                let coeffs = match p.array(1) {
                    Some(c) if !c.is_empty() => c.to_vec(),
                    _ => vec![1.0; ins.len()],
                };
                Op::Sum(coeffs)
            }
            "BinaryOp" => {
                ensure!(
                    p.int(0, 0) == 0 && p.int(1, 0) == 0 && ins.len() == 2,
                    "{}: only the addition of two blobs is supported",
                    at(name)
                );
                Op::Sum(vec![1.0, 1.0])
            }
            "Interp" => {
                let (sh, sw) = (p.get(1, 1.0), p.get(2, 1.0));
                ensure!(
                    sh == sw
                        && p.int(3, 0) == 0
                        && p.int(4, 0) == 0
                        && p.int(5, 0) == 0
                        && p.int(6, 0) == 0,
                    "{}: only equal height and width scale factors (no fixed output size, no align_corner) are supported",
                    at(name)
                );
                match p.int(0, 0) {
                    1 if sh >= 1.0 && sh.fract() == 0.0 => Op::Nearest(sh as usize),
                    3 => Op::Bicubic(sh),
                    t => bail!("{}: Interp type {t} by {sh} is not supported (nearest by whole factors, bicubic)", at(name)),
                }
            }
            "PixelShuffle" => {
                ensure!(p.int(1, 0) == 0, "{}: only PyTorch's pixel shuffle order (mode 0) is supported", at(name));
                Op::PixelShuffle(p.count(0, 1).with_context(|| at(name))?)
            }
            other => bail!(
                "{}: layer type {other} is not supported (easel reads Input, Convolution, Split, Concat, Eltwise, BinaryOp, Interp, PReLU and PixelShuffle)",
                at(name)
            ),
        };
        ensure!(
            tops.len() == 1,
            "{}: {} outputs (one expected)",
            at(name),
            tops.len()
        );
        nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: ins,
        });
        blobs.insert(tops[0].to_string(), nodes.len());
        last_top = Some(nodes.len());
    }
    ensure!(input.is_some(), "{param_file}: no Input layer");
    ensure!(
        layers == declared,
        "{param_file} declares {declared} layers and lists {layers}"
    );
    ensure!(
        weights.at == bin.len(),
        "{bin_file} has {} bytes after the last layer's weights: it belongs to another .param",
        bin.len() - weights.at
    );
    let mut output = blobs
        .get("output")
        .copied()
        .or(last_top)
        .context("no layers")?;
    let nodes = fuse(nodes, &mut output);
    Graph::new(nodes, output, 3, param_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv_bin(cin: usize, cout: usize) -> Vec<u8> {
        let mut b = TAG_FP16.to_le_bytes().to_vec();
        let n = cin * cout * 9;
        for i in 0..n {
            b.extend(half::f16::from_f32(i as f32 * 1e-3).to_le_bytes());
        }
        b.resize(4 + (2 * n).next_multiple_of(4), 0);
        for i in 0..cout {
            b.extend((i as f32).to_le_bytes());
        }
        b
    }

    const TINY: &str = "7767517\n3 3\nInput in 0 1 data\nConvolution c 1 1 data x 0=3 1=3 4=1 5=1 6=81 9=2 -23310=1,0.2\nInterp up 1 1 x output 0=1 1=2.0 2=2.0\n";

    #[test]
    fn reads_a_tiny_network() {
        let g = parse(TINY, &conv_bin(3, 3), "t.param", "t.bin").unwrap();
        assert_eq!(g.scale(), 2);
        assert_eq!(g.parameters(), 84);
    }

    #[test]
    fn a_short_or_long_bin_names_the_file_and_layer() {
        let mut bin = conv_bin(3, 3);
        bin.pop();
        let e = format!("{:#}", parse(TINY, &bin, "t.param", "t.bin").unwrap_err());
        assert!(e.contains("t.bin") && e.contains("bias of layer c"), "{e}");
        let mut bin = conv_bin(3, 3);
        bin.extend([0; 8]);
        let e = format!("{:#}", parse(TINY, &bin, "t.param", "t.bin").unwrap_err());
        assert!(e.contains("8 bytes after"), "{e}");
    }

    #[test]
    fn an_unknown_layer_names_its_line() {
        let text = TINY.replace("Interp up", "Softmax up");
        let e = format!(
            "{:#}",
            parse(&text, &conv_bin(3, 3), "t.param", "t.bin").unwrap_err()
        );
        assert!(e.contains("t.param:5") && e.contains("Softmax"), "{e}");
    }

    #[test]
    fn a_kernel_that_does_not_fit_its_input_is_an_error() {
        let text = TINY.replace("6=81", "6=108");
        let e = format!(
            "{:#}",
            parse(&text, &conv_bin(4, 3), "t.param", "t.bin").unwrap_err()
        );
        assert!(e.contains("4 input channels"), "{e}");
    }

    /// Nonsense numbers in a .param are errors, never panics or huge allocations.
    #[test]
    fn malformed_params_are_errors() {
        for (from, to) in [
            ("0=3 1=3", "0=-1 1=3"),
            ("6=81", "6=99999999999"),
            ("6=81", "6=4294967296"),
            ("Interp up 1 1 x", "Interp up 0 1 x"),
            ("0=1 1=2.0 2=2.0", "0=1 1=4294967296 2=4294967296"),
            ("0=1 1=2.0 2=2.0", "0=1 1=2.0 2=2.0 5=1"),
            ("Convolution c 1 1", "Convolution c 18446744073709551615 1"),
        ] {
            let text = TINY.replace(from, to);
            assert_ne!(text, TINY, "{to}");
            let r = std::panic::catch_unwind(|| parse(&text, &conv_bin(3, 3), "t.param", "t.bin"));
            assert!(
                matches!(r, Ok(Err(_))),
                "{to}: {:?}",
                r.map(|r| r.map(|g| g.scale()))
            );
        }
        let eltwise =
            "7767517\n3 3\nInput in 0 1 data\nSplit s 1 2 data a b\nEltwise e 2 1 a b output\n";
        let e = parse(eltwise, &[], "t.param", "t.bin").unwrap_err();
        assert!(format!("{e:#}").contains("only Eltwise sum"), "{e:#}");
    }
}
