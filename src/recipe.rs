//! Images that remember how they were made. Every PNG easel writes carries its recipe as
//! PNG text chunks (the sketch source, seed, size and class), so `render --from` can make
//! it again, bit for bit, or at another size. Files are written atomically.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::DynamicImage;

const KEY_SOURCE: &str = "easel:sketch";
const KEY_NAME: &str = "easel:name";
const KEY_SEED: &str = "easel:seed";
const KEY_SIZE: &str = "easel:size";
const KEY_CLASS: &str = "easel:class";

/// Everything needed to render an image again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The sketch's name (its file stem), for naming and messages.
    pub name: String,
    pub source: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub class: Option<String>,
}

/// Renders a sketch (or one of its classes) with optional seed and size overrides, and
/// returns the image with the recipe that reproduces it.
pub fn render(
    sketch: &crate::sketch::Sketch,
    class: Option<&str>,
    seed: Option<u64>,
    size: Option<(u32, u32)>,
) -> Result<(image::DynamicImage, Recipe)> {
    let mut spec = sketch.class_spec(class)?.clone();
    if let Some(s) = seed {
        spec.set_seed(s);
    }
    if let Some((w, h)) = size {
        spec.set_size(w, h);
    }
    let img = spec.render()?;
    let (width, height) = spec.size();
    let recipe = Recipe {
        name: sketch.name(),
        source: sketch.source.clone(),
        seed: spec.seed(),
        width,
        height,
        class: class.map(str::to_string),
    };
    Ok((img, recipe))
}

/// Writes `img` as PNG to `path` (temp file + rename, so a crash never leaves a
/// half-written file), with the recipe's text chunks when given.
pub fn write_png(path: &Path, img: &DynamicImage, recipe: Option<&Recipe>) -> Result<()> {
    let (color, bytes): (png::ColorType, &[u8]) = match img {
        DynamicImage::ImageLuma8(g) => (png::ColorType::Grayscale, g.as_raw()),
        DynamicImage::ImageRgb8(c) => (png::ColorType::Rgb, c.as_raw()),
        DynamicImage::ImageRgba8(c) => (png::ColorType::Rgba, c.as_raw()),
        other => bail!("cannot write a {:?} image as PNG", other.color()),
    };
    write_atomically(path, |file| {
        let mut enc = png::Encoder::new(BufWriter::new(file), img.width(), img.height());
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        enc.add_text_chunk(
            "Software".into(),
            format!("easel {}", env!("CARGO_PKG_VERSION")),
        )?;
        if let Some(r) = recipe {
            enc.add_itxt_chunk(KEY_NAME.into(), r.name.clone())?;
            enc.add_itxt_chunk(KEY_SOURCE.into(), r.source.clone())?;
            enc.add_text_chunk(KEY_SEED.into(), r.seed.to_string())?;
            enc.add_text_chunk(KEY_SIZE.into(), format!("{}x{}", r.width, r.height))?;
            if let Some(c) = &r.class {
                enc.add_itxt_chunk(KEY_CLASS.into(), c.clone())?;
            }
        }
        let mut writer = enc.write_header()?;
        writer.write_image_data(bytes)?;
        writer.finish()?;
        Ok(())
    })
}

/// Runs `write` on a temporary file next to `path`, then renames it into place.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} into place", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes equally sized frames as a looping GIF, atomically. Colour quantisation
/// (NeuQuant) is the slow part, so frames are quantised in parallel, then written in order.
pub fn write_gif(path: &Path, frames: &[image::RgbImage], delay_centiseconds: u16) -> Result<()> {
    let Some(first) = frames.first() else {
        bail!("no frames to write to {}", path.display())
    };
    let (w, h) = first.dimensions();
    if w > u16::MAX as u32 || h > u16::MAX as u32 {
        bail!("GIF frames are at most 65535 pixels a side, got {w}x{h}");
    }
    if frames.iter().any(|f| f.dimensions() != (w, h)) {
        bail!("GIF frames must all be {w}x{h}");
    }
    use rayon::prelude::*;
    let quantised: Vec<gif::Frame> = frames
        .par_iter()
        .map(|img| {
            let mut f = gif::Frame::from_rgb_speed(w as u16, h as u16, img.as_raw(), 10);
            f.delay = delay_centiseconds;
            f
        })
        .collect();
    write_atomically(path, |file| {
        let mut enc = gif::Encoder::new(std::io::BufWriter::new(file), w as u16, h as u16, &[])?;
        enc.set_repeat(gif::Repeat::Infinite)?;
        for f in &quantised {
            enc.write_frame(f)?;
        }
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Reads the recipe from a PNG written by easel.
pub fn read_recipe(path: &Path) -> Result<Recipe> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let decoder = png::Decoder::new(BufReader::new(file));
    let reader = decoder
        .read_info()
        .with_context(|| format!("{} is not a readable PNG", path.display()))?;
    let info = reader.info();
    let mut texts: Vec<(String, String)> = Vec::new();
    for t in &info.uncompressed_latin1_text {
        texts.push((t.keyword.clone(), t.text.clone()));
    }
    for t in &info.compressed_latin1_text {
        texts.push((t.keyword.clone(), t.get_text().unwrap_or_default()));
    }
    for t in &info.utf8_text {
        texts.push((t.keyword.clone(), t.get_text().unwrap_or_default()));
    }
    let get = |k: &str| {
        texts
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let Some(source) = get(KEY_SOURCE) else {
        bail!(
            "{} carries no easel recipe (it was not written by `easel render`)",
            path.display()
        );
    };
    let seed = get(KEY_SEED)
        .and_then(|s| s.parse().ok())
        .context("recipe has no valid seed")?;
    let (width, height) = get(KEY_SIZE)
        .and_then(|s| parse_size(&s).ok())
        .with_context(|| format!("{}: recipe has no valid size", path.display()))?;
    Ok(Recipe {
        name: get(KEY_NAME).unwrap_or_else(|| "sketch".into()),
        source,
        seed,
        width,
        height,
        class: get(KEY_CLASS),
    })
}

/// Parses `512` or `640x480`.
pub fn parse_size(text: &str) -> std::result::Result<(u32, u32), String> {
    let bad = || format!("bad size \"{text}\"; expected N or WxH, e.g. 512 or 640x480");
    let (w, h) = match text.split_once(['x', 'X']) {
        Some((w, h)) => (
            w.trim().parse::<i64>().map_err(|_| bad())?,
            h.trim().parse::<i64>().map_err(|_| bad())?,
        ),
        None => {
            let s = text.trim().parse::<i64>().map_err(|_| bad())?;
            (s, s)
        }
    };
    crate::sketch::reader::check_size(w, h, crate::sketch::MAX_SIDE, crate::sketch::MAX_PIXELS)
}
