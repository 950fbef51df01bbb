//! The CPU renderer. Pixels go through the network in chunks of 64, stored feature-major
//! (`[feature][pixel]`) so every layer is a run of broadcast multiply-adds over
//! contiguous pixels, held in registers four outputs × 16 pixels at a time. One chunk
//! passes through all layers while it is in L1; rows run in parallel; memory is the
//! output image plus two small buffers per thread, at any size.
//!
//! On x86-64 with AVX2+FMA (checked at run time) the same code is compiled a second time
//! with those features enabled.

use image::{DynamicImage, GrayImage, RgbImage};
use rayon::prelude::*;

use super::blocks::output_block;
use super::net::{Activation, Dense, Network};
use super::{CppnSpec, OutputMode, Symmetry};

const CHUNK: usize = 64;
const PIXEL_BLOCK: usize = 16;
const OUT_BLOCK: usize = 4;

/// Renders the network at the spec's size with latent vector `z`.
pub fn render(spec: &CppnSpec, net: &Network, z: &[f32]) -> DynamicImage {
    render_rows_unless(spec, net, z, &|| false)
}

/// [`render`] that gives up once `cancelled()` says so (a newer request wants the
/// renderer): `None`, promptly, as the rows left are skipped.
pub fn render_unless(
    spec: &CppnSpec,
    net: &Network,
    z: &[f32],
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Option<DynamicImage> {
    let image = render_rows_unless(spec, net, z, cancelled);
    (!cancelled()).then_some(image)
}

/// Renders every row not skipped because `cancelled()` said so (asked once per row:
/// cheap next to a row of network evaluations).
fn render_rows_unless(
    spec: &CppnSpec,
    net: &Network,
    z: &[f32],
    cancelled: &(dyn Fn() -> bool + Sync),
) -> DynamicImage {
    let mut plan = Plan::new(spec, net, z);
    if let OutputMode::Uv(_) = spec.output {
        plan.uv_range = uv_range(spec, net, z);
    }
    let (w, h) = (spec.width as usize, spec.height as usize);
    let ch = plan.channels();
    let mut buf = vec![0u8; w * h * ch];
    buf.par_chunks_mut(w * ch).enumerate().for_each_init(
        || {
            (
                Buffers::new(plan.max_width()),
                vec![0f32; w * plan.outputs()],
            )
        },
        |(bufs, values), (y, row)| {
            if cancelled() {
                return;
            }
            render_row(&plan, y, values, bufs);
            write_pixels(&plan, values, row);
        },
    );
    match ch {
        1 => DynamicImage::ImageLuma8(GrayImage::from_raw(w as u32, h as u32, buf).expect("size")),
        _ => DynamicImage::ImageRgb8(RgbImage::from_raw(w as u32, h as u32, buf).expect("size")),
    }
}

/// The range of the two UV outputs over the frame, estimated on a 64-pixel preview so
/// memory stays bounded; values outside it clamp to the texture's edge.
fn uv_range(spec: &CppnSpec, net: &Network, z: &[f32]) -> [(f32, f32); 2] {
    let mut preview = spec.clone();
    let long = spec.width.max(spec.height) as f64;
    preview.width = ((spec.width as f64 * 64.0 / long).round() as u32).max(1);
    preview.height = ((spec.height as f64 * 64.0 / long).round() as u32).max(1);
    let values = render_values(&preview, net, z);
    let range = |c: usize| {
        let (lo, hi) = values
            .chunks_exact(2)
            .fold((f32::MAX, f32::MIN), |(lo, hi), v| {
                (lo.min(v[c]), hi.max(v[c]))
            });
        if hi - lo > 1e-6 {
            (lo, hi)
        } else {
            (lo - 0.5, lo + 0.5)
        }
    };
    [range(0), range(1)]
}

/// The network's outputs mapped to [0, 1], pixel-major (`[pixel][output]`), before any
/// colour conversion. For tests against [`render_reference`].
pub fn render_values(spec: &CppnSpec, net: &Network, z: &[f32]) -> Vec<f32> {
    let plan = Plan::new(spec, net, z);
    let (w, h) = (spec.width as usize, spec.height as usize);
    let mut out = vec![0f32; w * h * plan.outputs()];
    let mut bufs = Buffers::new(plan.max_width());
    for (y, row) in out.chunks_mut(w * plan.outputs()).enumerate() {
        render_row(&plan, y, row, &mut bufs);
    }
    out
}

/// The network's coordinate inputs (x, y, r as enabled) for every pixel, row-major:
/// exactly what the renderer feeds the first layer. Used to train fitted networks.
pub fn input_coordinates(spec: &CppnSpec) -> Vec<f32> {
    input_coordinates_shifted(spec, |_| (0.0, 0.0))
}

/// As [`input_coordinates`], each pixel's point moved off its centre by `shift(pixel)`
/// (in pixels; pixels numbered row by row): what a training step draws with sub-pixel
/// jitter.
pub fn input_coordinates_shifted(
    spec: &CppnSpec,
    mut shift: impl FnMut(usize) -> (f64, f64),
) -> Vec<f32> {
    let plan = Plan::geometry(spec);
    let mut out = Vec::new();
    let width = spec.width as usize;
    for py in 0..spec.height as usize {
        for px in 0..width {
            let (dx, dy) = shift(py * width + px);
            plan.features_at(px as f64 + 0.5 + dx, py as f64 + 0.5 + dy, |v| out.push(v));
        }
    }
    out
}

/// Everything a row needs, computed once per frame.
struct Plan<'a> {
    spec: &'a CppnSpec,
    /// The network with the (per-frame constant) latent inputs folded into the first
    /// layer's bias: the first layer then only sees x, y, r.
    layers: Vec<Dense>,
    half_w: f64,
    half_h: f64,
    unit: f64,
    /// UV mode: the outputs' (min, max) per axis, stretched to the texture's extent.
    uv_range: [(f32, f32); 2],
    /// Fourier input frequencies, times 2π.
    fourier: Vec<[f32; 2]>,
}

impl<'a> Plan<'a> {
    fn new(spec: &'a CppnSpec, net: &Network, z: &[f32]) -> Self {
        let mut layers = net.layers.clone();
        let coords = spec.inputs.coordinate_count();
        let first = &mut layers[0];
        let outs = first.outputs;
        for o in 0..outs {
            let mut b = first.b[o] as f64;
            for (k, zk) in z.iter().enumerate() {
                b += first.w[(coords + k) * outs + o] as f64 * *zk as f64;
            }
            first.b[o] = b as f32;
        }
        first.w.truncate(coords * outs);
        first.inputs = coords;
        Plan {
            layers,
            ..Plan::geometry(spec)
        }
    }

    /// The pixel → coordinate mapping alone.
    fn geometry(spec: &'a CppnSpec) -> Self {
        let (w, h) = (spec.width as f64, spec.height as f64);
        Plan {
            spec,
            layers: Vec::new(),
            half_w: w / 2.0,
            half_h: h / 2.0,
            unit: w.min(h) / 2.0 / spec.scale,
            uv_range: [(0.0, 1.0); 2],
            fourier: spec.inputs.fourier.map_or(vec![], |f| {
                let tau = std::f32::consts::TAU;
                f.frequencies(spec.seed)
                    .into_iter()
                    .map(|[bx, by]| [tau * bx, tau * by])
                    .collect()
            }),
        }
    }

    /// The network's coordinate inputs of pixel (px, py), in order: x, y, r (as enabled),
    /// then sin and cos of each Fourier feature.
    #[inline]
    fn features(&self, px: usize, py: usize, put: impl FnMut(f32)) {
        self.features_at(px as f64 + 0.5, py as f64 + 0.5, put)
    }

    /// The coordinate inputs of the point (fx, fy), in pixels from the canvas's corner
    /// (a pixel's centre is at +0.5).
    #[inline]
    fn features_at(&self, fx: f64, fy: f64, mut put: impl FnMut(f32)) {
        let (x, y, r) = self.coords(fx, fy);
        let inputs = &self.spec.inputs;
        for (on, v) in [(inputs.x, x), (inputs.y, y), (inputs.r, r)] {
            if on {
                put(v);
            }
        }
        for [bx, by] in &self.fourier {
            let (s, c) = (bx * x + by * y).sin_cos();
            put(s);
            put(c);
        }
    }

    fn channels(&self) -> usize {
        match self.spec.output {
            OutputMode::Gray => 1,
            _ => 3,
        }
    }

    fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    fn max_width(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.inputs.max(l.outputs))
            .max()
            .unwrap_or(1)
    }

    /// Network input coordinates of the point (fx, fy) in pixels: the shorter side spans
    /// [−scale, scale], so shapes keep their proportions on any canvas.
    #[inline]
    fn coords(&self, fx: f64, fy: f64) -> (f32, f32, f32) {
        let mut x = (fx - self.half_w) / self.unit;
        let mut y = (fy - self.half_h) / self.unit;
        match self.spec.symmetry {
            Symmetry::None => {}
            Symmetry::X => x = x.abs(),
            Symmetry::Y => y = y.abs(),
            Symmetry::XY => {
                x = x.abs();
                y = y.abs();
            }
        }
        (x as f32, y as f32, (x * x + y * y).sqrt() as f32)
    }
}

struct Buffers {
    a: Vec<f32>,
    b: Vec<f32>,
}

impl Buffers {
    fn new(width: usize) -> Self {
        Buffers {
            a: vec![0.0; width * CHUNK],
            b: vec![0.0; width * CHUNK],
        }
    }
}

/// Computes one row of output values (`[pixel][output]`, in [0, 1]).
fn render_row(plan: &Plan, y: usize, values: &mut [f32], bufs: &mut Buffers) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { render_row_avx2(plan, y, values, bufs) };
            return;
        }
    }
    render_row_generic::<false>(plan, y, values, bufs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn render_row_avx2(plan: &Plan, y: usize, values: &mut [f32], bufs: &mut Buffers) {
    render_row_generic::<true>(plan, y, values, bufs)
}

#[inline(always)]
fn render_row_generic<const FMA: bool>(
    plan: &Plan,
    y: usize,
    values: &mut [f32],
    bufs: &mut Buffers,
) {
    let width = plan.spec.width as usize;
    let outs = plan.outputs();
    for start in (0..width).step_by(CHUNK) {
        let n = CHUNK.min(width - start);
        // Inputs, feature-major. Padding lanes repeat the last pixel.
        for p in 0..CHUNK {
            let mut k = 0;
            plan.features(start + p.min(n - 1), y, |v| {
                bufs.a[k * CHUNK + p] = v;
                k += 1;
            });
        }
        let (mut src, mut dst) = (&mut bufs.a, &mut bufs.b);
        for layer in &plan.layers {
            dense::<FMA>(layer, src, dst);
            std::mem::swap(&mut src, &mut dst);
        }
        let act = plan.layers.last().expect("layers").activation;
        for p in 0..n {
            for c in 0..outs {
                values[(start + p) * outs + c] = unit_range(src[c * CHUNK + p], act);
            }
        }
    }
}

/// `out = act(W·inp + b)` for one chunk, feature-major.
#[inline(always)]
fn dense<const FMA: bool>(l: &Dense, inp: &[f32], out: &mut [f32]) {
    let (ni, no) = (l.inputs, l.outputs);
    let full = no / OUT_BLOCK * OUT_BLOCK;
    for o in (0..full).step_by(OUT_BLOCK) {
        output_block::<FMA, OUT_BLOCK, PIXEL_BLOCK, CHUNK>(&l.w, Some(&l.b), ni, no, inp, out, o);
    }
    for o in full..no {
        output_block::<FMA, 1, PIXEL_BLOCK, CHUNK>(&l.w, Some(&l.b), ni, no, inp, out, o);
    }
    l.activation.apply(&mut out[..no * CHUNK]);
}

/// Maps an output value to [0, 1]: activations with range [−1, 1] are shifted.
#[inline(always)]
fn unit_range(v: f32, act: Activation) -> f32 {
    let v = if act.ranges_over_minus_one_to_one() {
        (v + 1.0) * 0.5
    } else {
        v
    };
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

fn unit_range_f64(v: f64, act: Activation) -> f64 {
    let v = if act.ranges_over_minus_one_to_one() {
        (v + 1.0) * 0.5
    } else {
        v
    };
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

#[inline(always)]
fn to_byte(v: f32) -> u8 {
    (v * 255.0 + 0.5) as u8
}

/// Turns a row of output values into pixels of the output mode.
fn write_pixels(plan: &Plan, values: &[f32], dst: &mut [u8]) {
    let outs = plan.outputs();
    let pixels = values.chunks_exact(outs);
    match &plan.spec.output {
        OutputMode::Gray => pixels
            .zip(dst.iter_mut())
            .for_each(|(v, d)| *d = to_byte(v[0])),
        OutputMode::Rgb => pixels.zip(dst.chunks_exact_mut(3)).for_each(|(v, d)| {
            for c in 0..3 {
                d[c] = to_byte(v[c]);
            }
        }),
        OutputMode::Hsv => pixels.zip(dst.chunks_exact_mut(3)).for_each(|(v, d)| {
            let rgb = hsv_to_rgb(v[0], v[1], v[2]);
            for c in 0..3 {
                d[c] = to_byte(rgb[c]);
            }
        }),
        OutputMode::Uv(texture) => {
            let [(u0, u1), (v0, v1)] = plan.uv_range;
            pixels.zip(dst.chunks_exact_mut(3)).for_each(|(v, d)| {
                let (u, v) = ((v[0] - u0) / (u1 - u0), (v[1] - v0) / (v1 - v0));
                d.copy_from_slice(&sample_bilinear(texture, u, v))
            })
        }
    }
}

pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = (h.fract() + 1.0).fract() * 6.0;
    let i = h.floor();
    let f = h - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Bilinear sample of `tex` at (u, v) in [0, 1]² (clamped to the edges).
pub fn sample_bilinear(tex: &RgbImage, u: f32, v: f32) -> [u8; 3] {
    let (tw, th) = (tex.width() as f32, tex.height() as f32);
    let x = (u * (tw - 1.0)).clamp(0.0, tw - 1.0);
    let y = (v * (th - 1.0)).clamp(0.0, th - 1.0);
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = (
        (x0 + 1).min(tex.width() - 1),
        (y0 + 1).min(tex.height() - 1),
    );
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let px = |x, y| tex.get_pixel(x, y).0.map(f32::from);
    let (a, b, c, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
    [0, 1, 2].map(|i| {
        let top = a[i] + (b[i] - a[i]) * fx;
        let bottom = c[i] + (d[i] - c[i]) * fx;
        (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8
    })
}

/// The reference renderer: one pixel at a time through the f64 network. Slow; used by
/// tests to check the fast path.
pub fn render_reference(spec: &CppnSpec, net: &Network, z: &[f32]) -> Vec<f64> {
    let plan = Plan::geometry(spec);
    let act = net.layers.last().expect("layers").activation;
    let mut out = Vec::new();
    for py in 0..spec.height as usize {
        for px in 0..spec.width as usize {
            let mut input = Vec::new();
            plan.features(px, py, |v| input.push(v as f64));
            input.extend(z.iter().map(|&v| v as f64));
            let o = net.forward_reference(&input);
            out.extend(o.iter().map(|&v| unit_range_f64(v, act)));
        }
    }
    out
}
