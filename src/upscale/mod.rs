//! ESRGAN upscaling: pretrained Real-ESRGAN / ESRGAN networks the person brings (ncnn
//! `.param` + `.bin`, PyTorch `.pth`, safetensors) or one of the small ones shipped in
//! `models/esrgan`, run in tiles so any picture fits in bounded memory.
//!
//! Each tile is padded by mirrored pixels (or its neighbours' real pixels inside the
//! picture), run through the network, and cropped, as the Real-ESRGAN ncnn app does, so
//! seams match the untiled result.

mod graph;
mod ncnn;
pub mod resize;
mod torch;

use std::path::{Path, PathBuf};

pub use crate::gan::kernels::{fp32_winograd, Precision};
use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use image::DynamicImage;

pub use graph::Graph;

/// The most output pixels easel makes (a 10000×10000 picture): beyond this the output
/// alone needs more than 400 MB and the PNG takes minutes to write.
pub const MAX_OUTPUT_PIXELS: u64 = 100_000_000;

/// The networks shipped in `models/esrgan` (ncnn files, BSD-3-Clause, from Real-ESRGAN),
/// and the one `scripts/fetch_realesrgan.sh` adds.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "realesr-animevideov3-x4",
        "SRVGGNetCompact x4, 0.6 M parameters: fast, for drawings and flat colour",
    ),
    ("realesr-animevideov3-x3", "the same network, ending with a bicubic x0.75"),
    ("realesr-animevideov3-x2", "the same network, ending with a bicubic x0.5"),
    (
        "realesrgan-x4plus-anime",
        "RRDBNet x4, 6 blocks, 4.5 M parameters: illustrations",
    ),
    (
        "realesrgan-x4plus",
        "RRDBNet x4, 23 blocks, 16.7 M parameters: photographs (fetch it with scripts/fetch_realesrgan.sh)",
    ),
];

/// Mirrored pixels around the whole picture, as the Real-ESRGAN ncnn app pads its input:
/// the network's zero padding then falls outside the picture.
pub const BORDER: u32 = 10;

/// How a picture is cut into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Side of a tile, in input pixels (0: the whole picture at once).
    pub tile: u32,
    /// Pixels of the neighbouring tiles each tile sees (cropped away after); at the
    /// picture's edges the context is the [`BORDER`] instead.
    pub pad: u32,
}

impl Default for Tiling {
    fn default() -> Self {
        Tiling { tile: 160, pad: 48 }
    }
}

/// A loaded upscaling network.
pub struct Upscaler {
    graph: Graph,
    device: Device,
    /// What the person named (a shipped model's name or a path), for recipes.
    pub model: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// The arithmetic its CPU convolutions run in (bf16 only where the CPU has it).
    pub precision: Precision,
}

/// Folders searched for shipped models: `$EASEL_MODELS/esrgan`, `./models/esrgan`, and
/// the source tree's `models/esrgan`.
fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![];
    if let Some(d) = std::env::var_os("EASEL_MODELS") {
        dirs.push(PathBuf::from(d).join("esrgan"));
    }
    dirs.push(PathBuf::from("models/esrgan"));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/esrgan"));
    dirs
}

/// The file a `--model` value names: a path to a `.param`, `.pth` or `.safetensors`, or
/// a shipped model's name.
pub fn resolve(model: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let looks_like_path = path.extension().is_some() || model.contains('/');
    if !looks_like_path {
        for dir in model_dirs() {
            let p = dir.join(format!("{model}.param"));
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
    if looks_like_path {
        bail!(
            "{model} does not exist (--model takes a .param with its .bin beside it, a .pth, a .safetensors, or one of {})",
            names.join(", ")
        );
    }
    let hint = if model == "realesrgan-x4plus" {
        " (it is not shipped: scripts/fetch_realesrgan.sh downloads it into models/esrgan)"
    } else {
        ""
    };
    bail!(
        "no model named {model}{hint}; looked in {}. Shipped names: {}; or give a path to a .param, .pth or .safetensors",
        model_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        names.join(", ")
    )
}

impl Upscaler {
    /// Loads `model` (see [`resolve`]) to run on `device`.
    pub fn load(model: &str, device: &Device) -> Result<Self> {
        Self::load_with(model, device, Precision::Fp32)
    }

    /// [`Self::load`] with the convolutions in `precision`: bf16 through Candle's bf16 ops
    /// on a GPU; on the CPU easel's bf16 kernel, or fp32 where the CPU lacks AVX512_BF16
    /// ([`Precision::bf16_available`] says which).
    pub fn load_with(model: &str, device: &Device, precision: Precision) -> Result<Self> {
        let file = resolve(model)?;
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        let graph = match ext {
            "param" => ncnn::load(&file)?,
            "bin" => bail!(
                "{} is the weights half of an ncnn model: pass its .param",
                file.display()
            ),
            "pth" | "pt" | "ckpt" | "safetensors" => torch::load(&file)?,
            _ => bail!(
                "{}: unknown model format (expected .param, .pth or .safetensors)",
                file.display()
            ),
        };
        let precision = match precision {
            // Candle's CPU ops (the portable path) have no bf16 matrix product.
            Precision::Bf16 if !device.is_cpu() => Precision::Bf16,
            Precision::Bf16
                if crate::gan::kernels::enabled(device) && Precision::bf16_available() =>
            {
                Precision::Bf16
            }
            _ => Precision::Fp32,
        };
        Ok(Upscaler {
            graph: graph.to_device(device, precision)?,
            device: device.clone(),
            model: model.to_string(),
            file,
            precision,
        })
    }

    /// Builds an upscaler from a graph (tests).
    pub fn from_graph(graph: Graph, device: &Device) -> Result<Self> {
        Ok(Upscaler {
            graph: graph.to_device(device, Precision::Fp32)?,
            device: device.clone(),
            model: String::new(),
            file: PathBuf::new(),
            precision: Precision::Fp32,
        })
    }

    pub fn scale(&self) -> u32 {
        self.graph.scale() as u32
    }

    /// "x4, 16.7 M parameters".
    pub fn summary(&self) -> String {
        format!(
            "x{}, {:.2} M parameters",
            self.graph.scale(),
            self.graph.parameters() as f64 / 1e6
        )
    }

    /// Checks that a `w`×`h` input makes an output within [`MAX_OUTPUT_PIXELS`].
    pub fn check_size(&self, w: u32, h: u32) -> Result<()> {
        let s = u64::from(self.scale());
        let px = u64::from(w) * s * u64::from(h) * s;
        ensure!(
            px <= MAX_OUTPUT_PIXELS,
            "a {w}x{h} picture upscaled x{s} is {}x{} = {:.0} megapixels, over easel's limit of {} megapixels",
            u64::from(w) * s,
            u64::from(h) * s,
            px as f64 / 1e6,
            MAX_OUTPUT_PIXELS / 1_000_000
        );
        Ok(())
    }

    /// The number of tiles `upscale` runs for a `w`×`h` picture.
    pub fn tiles(&self, w: u32, h: u32, tiling: Tiling) -> usize {
        let t = if tiling.tile == 0 {
            u32::MAX
        } else {
            tiling.tile
        };
        (w.div_ceil(t.min(w.max(1))) * h.div_ceil(t.min(h.max(1)))) as usize
    }

    /// Upscales `img`, calling `progress(done, total)` after each tile. RGB(A) out; an
    /// alpha channel is resized bicubically, apart from the network (as Real-ESRGAN's
    /// `--alpha_upsampler bicubic`).
    pub fn upscale(
        &self,
        img: &DynamicImage,
        tiling: Tiling,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<DynamicImage> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        ensure!(w > 0 && h > 0, "the picture is empty");
        self.check_size(w as u32, h as u32)?;
        let s = self.graph.scale();
        let rgb = img.to_rgb8();
        let planes: Vec<f32> = (0..3)
            .flat_map(|c| rgb.pixels().map(move |p| f32::from(p.0[c]) / 255.0))
            .collect();
        let (wo, ho) = (w * s, h * s);
        let mut out = vec![0u8; wo * ho * 3];
        let t = if tiling.tile == 0 {
            w.max(h)
        } else {
            tiling.tile as usize
        };
        let context = tiling.pad as isize;
        let border = BORDER as isize;
        let multiple = self.graph.multiple();
        let total = w.div_ceil(t) * h.div_ceil(t);
        let mut done = 0;
        for y0 in (0..h).step_by(t) {
            for x0 in (0..w).step_by(t) {
                let (x1, y1) = ((x0 + t).min(w), (y0 + t).min(h));
                // A window of one size for every tile (so each tile's buffers are the
                // same size as the last's and are reused): the tile with at least
                // `context` pixels of its neighbours around it, shifted inwards rather than
                // reaching past the picture's own mirrored border, so a tile at the edge
                // sees exactly what the whole picture run at once sees there.
                let window = |a0: usize, a1: usize, n: usize| -> (isize, usize) {
                    let full = n + 2 * BORDER as usize;
                    let size = (t + 2 * context as usize).min(full);
                    let lo = (a0 as isize - context)
                        .min(n as isize + border - size as isize)
                        .max(-border);
                    debug_assert!(lo <= a0 as isize && lo + size as isize >= a1 as isize);
                    (lo, size)
                };
                let (lx, ww) = window(x0, x1, w);
                let (ly, wh) = window(y0, y1, h);
                // Extra mirrored pixels on the right and bottom make the tile a multiple
                // of what the network's pixel-unshuffle needs.
                let tw = ww.next_multiple_of(multiple);
                let th = wh.next_multiple_of(multiple);
                let (left, top) = ((x0 as isize - lx) as usize, (y0 as isize - ly) as usize);
                let mut tile = vec![0f32; 3 * tw * th];
                for c in 0..3 {
                    let plane = &planes[c * w * h..(c + 1) * w * h];
                    for ty in 0..th {
                        let sy = reflect(ly + ty as isize, h);
                        let row = &mut tile[(c * th + ty) * tw..(c * th + ty + 1) * tw];
                        for (tx, v) in row.iter_mut().enumerate() {
                            *v = plane[sy * w + reflect(lx + tx as isize, w)];
                        }
                    }
                }
                let x = Tensor::from_vec(tile, (1, 3, th, tw), &self.device)?
                    .to_dtype(self.graph.dtype_on(&self.device, self.precision))?;
                let y = self
                    .graph
                    .forward(&x)?
                    .flatten_all()?
                    .to_device(&Device::Cpu)?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1::<f32>()?;
                let (yw, yh) = (tw * s, th * s);
                ensure!(
                    y.len() == 3 * yw * yh,
                    "the network's output has an unexpected size"
                );
                for c in 0..3 {
                    for oy in 0..(y1 - y0) * s {
                        let src = &y[(c * yh + top * s + oy) * yw + left * s..][..(x1 - x0) * s];
                        let dst_row = (y0 * s + oy) * wo + x0 * s;
                        for (i, v) in src.iter().enumerate() {
                            out[(dst_row + i) * 3 + c] = to_u8(*v);
                        }
                    }
                }
                done += 1;
                progress(done, total);
            }
        }
        let rgb = image::RgbImage::from_raw(wo as u32, ho as u32, out).context("output size")?;
        if !img.color().has_alpha() {
            return Ok(DynamicImage::ImageRgb8(rgb));
        }
        let alpha: Vec<f32> = img
            .to_rgba8()
            .pixels()
            .map(|p| f32::from(p.0[3]) / 255.0)
            .collect();
        let alpha = resize::bicubic(&alpha, h, w, ho, wo);
        let mut rgba = image::RgbaImage::new(wo as u32, ho as u32);
        for ((o, c), a) in rgba.pixels_mut().zip(rgb.pixels()).zip(alpha) {
            *o = image::Rgba([c.0[0], c.0[1], c.0[2], to_u8(a)]);
        }
        Ok(DynamicImage::ImageRgba8(rgba))
    }
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Index `i` of an axis of `n` samples, mirrored at the edges without repeating them
/// (numpy's "reflect"), folded again for pads wider than the picture.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(reflect(-5, 1), 0);
    }
}
