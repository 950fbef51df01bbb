//! The network: activations, seeded weights, and a plain f64 reference forward pass that
//! the fast renderer is tested against.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::fastmath;
use crate::noise::normal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Sin,
    Cos,
    Tan,
    Sign,
    Sigmoid,
    Relu,
    Gaussian,
    Abs,
    Softplus,
    Identity,
}

impl Activation {
    pub const NAMES: &'static [&'static str] = &[
        "tanh", "sin", "cos", "tan", "sign", "sigmoid", "relu", "gaussian", "abs", "softplus",
        "identity",
    ];
    pub const ALL: [Activation; 11] = [
        Activation::Tanh,
        Activation::Sin,
        Activation::Cos,
        Activation::Tan,
        Activation::Sign,
        Activation::Sigmoid,
        Activation::Relu,
        Activation::Gaussian,
        Activation::Abs,
        Activation::Softplus,
        Activation::Identity,
    ];

    pub fn from_name(name: &str) -> Option<Activation> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|k| Self::ALL[k])
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|a| *a == self).expect("listed")]
    }

    /// Whether outputs span [−1, 1] (and are shifted to [0, 1] as colours).
    pub fn ranges_over_minus_one_to_one(self) -> bool {
        matches!(
            self,
            Activation::Tanh | Activation::Sin | Activation::Cos | Activation::Sign
        )
    }

    /// The exact value, in f64, for the reference implementation.
    pub fn reference(self, x: f64) -> f64 {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Sin => x.sin(),
            Activation::Cos => x.cos(),
            Activation::Tan => x.tan(),
            Activation::Sign => sign(x),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Relu => x.max(0.0),
            Activation::Gaussian => (-x * x).exp(),
            Activation::Abs => x.abs(),
            Activation::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Activation::Identity => x,
        }
    }

    /// Applies the activation in place. Plain `for` loops (not iterator adaptors, which
    /// end up as separate functions) so each is inlined into, and vectorised inside, the
    /// renderer's AVX2 kernel.
    #[inline(always)]
    pub fn apply(self, xs: &mut [f32]) {
        macro_rules! each {
            (|$x:ident| $body:expr) => {
                for v in xs.iter_mut() {
                    let $x = *v;
                    *v = $body;
                }
            };
        }
        match self {
            Activation::Tanh => each!(|x| fastmath::tanh(x)),
            Activation::Sin => each!(|x| fastmath::sin(x)),
            Activation::Cos => each!(|x| fastmath::cos(x)),
            Activation::Tan => each!(|x| fastmath::tan(x)),
            Activation::Sign => each!(|x| if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }),
            Activation::Sigmoid => each!(|x| fastmath::sigmoid(x)),
            Activation::Relu => each!(|x| x.max(0.0)),
            Activation::Gaussian => each!(|x| fastmath::exp(-x * x)),
            Activation::Abs => each!(|x| x.abs()),
            Activation::Softplus => each!(|x| fastmath::softplus(x)),
            Activation::Identity => {}
        }
    }
}

impl Activation {
    /// Whether training can pass a gradient through it (sign has none; tan's poles
    /// blow any step up).
    pub fn trainable(self) -> bool {
        !matches!(self, Activation::Sign | Activation::Tan)
    }

    /// The activation on a Candle tensor, for training (fits, the CPPN-GAN generator).
    pub fn tensor(self, h: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Activation::Tanh => h.tanh(),
            Activation::Sin => h.sin(),
            Activation::Cos => h.cos(),
            Activation::Tan => h.sin()?.div(&h.cos()?),
            Activation::Sigmoid => candle_nn::ops::sigmoid(h),
            Activation::Relu => h.relu(),
            Activation::Gaussian => h.sqr()?.neg()?.exp(),
            Activation::Abs => h.abs(),
            // relu(h) + ln(1 + e^−|h|): the same, without e^h overflowing.
            Activation::Softplus => h.relu()? + (h.abs()?.neg()?.exp()? + 1.0)?.log()?,
            Activation::Identity => Ok(h.clone()),
            Activation::Sign => Err(candle_core::Error::Msg(
                "sign has no gradient, so it cannot be trained".into(),
            )),
        }
    }
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Normal,
    Uniform,
    /// SIREN's (Sitzmann et al. 2020) for sin networks, with ω0 = 30 folded into the
    /// weights (easel's `sin` has no frequency factor): first layer U(±ω0/fan_in), hidden
    /// U(±√(6/fan_in)), the output layer U(±√(6/fan_in)/ω0); biases as PyTorch's Linear
    /// draws them, times ω0 except the output's. Every bound is scaled by `init_std`.
    Siren,
}

/// SIREN's ω0: the first layer's frequency.
const SIREN_OMEGA: f64 = 30.0;

/// One dense layer; `w` is row-major `[input][output]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub activation: Activation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub layers: Vec<Dense>,
}

impl Network {
    /// Random weights: N(0, std²), U(−std·√3, std·√3) (same variance) or SIREN's
    /// ([`Init::Siren`]); biases likewise or zero.
    pub fn random(
        sizes: &[usize],
        activations: &[Activation],
        std: f64,
        init: Init,
        biases: bool,
        seed: u64,
    ) -> Self {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xC0FF_EE00_D15E_A5E5);
        let depth = sizes.len().saturating_sub(1);
        // (weight bound, bias bound) of a uniform init for layer `k`: SIREN's.
        let siren = |k: usize, fan_in: f64| {
            // The output layer first: in a network without hidden layers it is also the first.
            let (w, b) = if k + 1 == depth {
                ((6.0 / fan_in).sqrt() / SIREN_OMEGA, 1.0 / fan_in.sqrt())
            } else if k == 0 {
                (SIREN_OMEGA / fan_in, SIREN_OMEGA / fan_in.sqrt())
            } else {
                ((6.0 / fan_in).sqrt(), SIREN_OMEGA / fan_in.sqrt())
            };
            (std * w, std * b)
        };
        let mut draw = move |k: usize, fan_in: usize, bias: bool| -> f32 {
            let mut uniform = |bound: f64| bound * (2.0 * rng.random::<f64>() - 1.0);
            (match init {
                Init::Normal => std * normal(&mut rng),
                Init::Uniform => uniform(std * 3f64.sqrt()),
                Init::Siren => {
                    let (w, b) = siren(k, fan_in as f64);
                    uniform(if bias { b } else { w })
                }
            }) as f32
        };
        let layers = sizes
            .windows(2)
            .zip(activations)
            .enumerate()
            .map(|(k, (io, &activation))| {
                let (inputs, outputs) = (io[0], io[1]);
                let w = (0..inputs * outputs)
                    .map(|_| draw(k, inputs, false))
                    .collect();
                let b = (0..outputs)
                    .map(|_| if biases { draw(k, inputs, true) } else { 0.0 })
                    .collect();
                Dense {
                    inputs,
                    outputs,
                    w,
                    b,
                    activation,
                }
            })
            .collect();
        Network { layers }
    }

    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// The reference forward pass: f64, one pixel, no tricks.
    pub fn forward_reference(&self, input: &[f64]) -> Vec<f64> {
        let mut x = input.to_vec();
        for l in &self.layers {
            x = (0..l.outputs)
                .map(|o| {
                    let sum: f64 = (0..l.inputs)
                        .map(|k| l.w[k * l.outputs + o] as f64 * x[k])
                        .sum();
                    l.activation.reference(sum + l.b[o] as f64)
                })
                .collect();
        }
        x
    }
}

impl Network {
    /// A mutation: every weight (and bias, when `biases`) plus `std`·N(0, 1), drawn from
    /// `seed` in a fixed order, so (parent, seed, std) always gives the same child.
    pub fn mutated(&self, seed: u64, std: f64, biases: bool) -> Network {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x4D07_A7E0_5EED_0001);
        let mut child = self.clone();
        for layer in &mut child.layers {
            for w in &mut layer.w {
                *w += (std * normal(&mut rng)) as f32;
            }
            if biases {
                for b in &mut layer.b {
                    *b += (std * normal(&mut rng)) as f32;
                }
            }
        }
        child
    }

    /// The weights as a sketch's `weights:` value (one `#{ w, b }` per layer, `w`
    /// row-major `[input][output]`). Each f32 is written as its exact f64 value, so the
    /// sketch reads back the very same bits.
    pub fn weights_source(&self, indent: &str) -> String {
        let numbers = |xs: &[f32]| -> String {
            xs.iter()
                .map(|&x| format_exact(x))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::from("[\n");
        for l in &self.layers {
            out.push_str(&format!(
                "{indent}    #{{ w: [{}],\n{indent}       b: [{}] }},\n",
                numbers(&l.w),
                numbers(&l.b)
            ));
        }
        out.push_str(indent);
        out.push(']');
        out
    }
}

/// `x` as a decimal that parses (as f64, then rounded to f32) back to exactly `x`: the
/// f64 widening is exact, and Rust prints an f64 with the shortest digits that round-trip.
pub fn format_exact(x: f32) -> String {
    let text = format!("{}", x as f64);
    // A whole number would read as an integer; the reader takes both, but keep floats looking like floats.
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}
