//! Images that remember how they were made. Every PNG easel writes carries its recipe as
//! PNG text chunks (the sketch source, seed, size and class), so `render --from` can make
//! it again, bit for bit, or at another size. Files are written atomically.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use image::DynamicImage;

const KEY_SOURCE: &str = "easel:sketch";
const KEY_NAME: &str = "easel:name";
const KEY_SEED: &str = "easel:seed";
const KEY_SIZE: &str = "easel:size";
const KEY_CLASS: &str = "easel:class";
const KEY_KNOBS: &str = "easel:knobs";
/// An upscaled picture's making: model, input file, tiling (JSON).
pub const KEY_UPSCALE: &str = "easel:upscale";
/// A sample grid's making: generator, checkpoint, seed, count, truncation, class (JSON);
/// `easel sample --from` reads it.
pub const KEY_SAMPLE: &str = "easel:sample";
/// A sweep sheet's making: the sketch and its varied keys (JSON); `easel sweep --from`
/// reads it.
pub const KEY_SWEEP: &str = "easel:sweep";

/// Everything needed to render an image again.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// The sketch's name (its file stem), for naming and messages.
    pub name: String,
    pub source: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub class: Option<String>,
    /// The values of the sketch's knobs (`params`), when it declares any.
    pub knobs: crate::sketch::Knobs,
}

/// Writes `img` as PNG to `path` (temp file + rename, so a crash never leaves a
/// half-written file), with the recipe's text chunks when given.
/// Images bigger than this (512²) are written with fast PNG compression.
const FAST_PNG_PIXELS: u64 = 512 * 512;

pub fn write_png(path: &Path, img: &DynamicImage, recipe: Option<&Recipe>) -> Result<()> {
    write_png_tagged(path, img, recipe, &[])
}

/// [`write_png`] with more text chunks (`key`, text), e.g. [`KEY_UPSCALE`].
pub fn write_png_tagged(
    path: &Path,
    img: &DynamicImage,
    recipe: Option<&Recipe>,
    tags: &[(&str, String)],
) -> Result<()> {
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
        // Big renders: fdeflate's fast mode encodes a megapixel several times faster than
        // the default for a file ~10–20% larger; small images keep the tighter default.
        if u64::from(img.width()) * u64::from(img.height()) > FAST_PNG_PIXELS {
            enc.set_compression(png::Compression::Fast);
        }
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
            if !r.knobs.is_empty() {
                enc.add_itxt_chunk(KEY_KNOBS.into(), serde_json::to_string(&r.knobs)?)?;
            }
        }
        for (key, text) in tags {
            enc.add_itxt_chunk(key.to_string(), text.clone())?;
        }
        let mut writer = enc.write_header()?;
        writer.write_image_data(bytes)?;
        writer.finish()?;
        Ok(())
    })
}

/// The still-image formats easel writes, chosen by a file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StillFormat {
    /// The only one that carries the recipe.
    Png,
    Jpeg,
    Webp,
    Gif,
}

impl StillFormat {
    pub const HELP: &str = ".png (keeps the recipe), .jpg, .webp or .gif";

    /// The format for `path`'s extension, or an error naming the ones that work.
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "png" => StillFormat::Png,
            "jpg" | "jpeg" => StillFormat::Jpeg,
            "webp" => StillFormat::Webp,
            "gif" => StillFormat::Gif,
            "" => bail!(
                "{}: no file extension; name it with {}",
                path.display(),
                Self::HELP
            ),
            other => bail!(
                "{}: cannot write .{other} images; use {}",
                path.display(),
                Self::HELP
            ),
        })
    }
}

/// Writes `img` atomically in the format its extension names: PNG with the recipe's
/// text chunks, or JPEG (quality 92), lossless WebP or a one-frame GIF, which cannot
/// carry a recipe.
pub fn write_image(path: &Path, img: &DynamicImage, recipe: Option<&Recipe>) -> Result<()> {
    write_image_tagged(path, img, recipe, &[])
}

/// [`write_image`] with more text chunks for a PNG (other formats carry none).
pub fn write_image_tagged(
    path: &Path,
    img: &DynamicImage,
    recipe: Option<&Recipe>,
    tags: &[(&str, String)],
) -> Result<()> {
    let format = match StillFormat::of(path)? {
        StillFormat::Png => return write_png_tagged(path, img, recipe, tags),
        StillFormat::Jpeg => image::ImageFormat::Jpeg,
        StillFormat::Webp => image::ImageFormat::WebP,
        StillFormat::Gif => image::ImageFormat::Gif,
    };
    // JPEG has no alpha, and the WebP and GIF encoders take 8-bit RGB(A): one RGB(A)
    // conversion serves all three.
    let img = match img {
        DynamicImage::ImageRgba8(_) if format != image::ImageFormat::Jpeg => img.clone(),
        DynamicImage::ImageLuma8(_) if format == image::ImageFormat::Jpeg => img.clone(),
        _ => DynamicImage::ImageRgb8(img.to_rgb8()),
    };
    write_atomically(path, |file| {
        let mut out = BufWriter::new(file);
        match format {
            image::ImageFormat::Jpeg => {
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
                    .encode_image(&img)?
            }
            other => img.write_to(&mut out, other)?,
        }
        out.flush()?;
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Runs `write` on a temporary file next to `path`, then renames it into place. Each
/// call gets its own temporary file, so two threads writing the same path never write
/// into one file; the last rename wins, and readers see one whole file or the other.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    replace(path, write, true)
}

/// As [`write_atomically`], without waiting for the disk (no fsync): for small files a
/// UI thread writes, whose loss in a power cut costs nothing (control.json). Readers
/// still see one whole file or the other.
pub fn write_atomically_unsynced(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<()>,
) -> Result<()> {
    replace(path, write, false)
}

fn replace(path: &Path, write: impl FnOnce(&mut File) -> Result<()>, sync: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        // tempfile creates 0600 files; what easel writes is as readable as any file.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    write(tmp.as_file_mut())?;
    tmp.as_file_mut().flush()?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error).with_context(|| {
        format!(
            "cannot move a temporary file into place as {}",
            path.display()
        )
    })?;
    Ok(())
}

/// Copies `from` to `to` atomically (a reader of `to` never sees half a copy).
pub fn copy_atomically(from: &Path, to: &Path) -> Result<()> {
    let mut src = File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    write_atomically(to, |f| {
        std::io::copy(&mut src, f)?;
        Ok(())
    })
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

/// The text of chunk `key` in a PNG, if it has one.
pub fn read_tag(path: &Path, key: &str) -> Result<Option<String>> {
    Ok(png_texts(path)?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v))
}

/// The JSON in chunk `key` of a PNG, read as a `T` (`what` names it in the error when it
/// does not parse), if the PNG has that chunk.
pub fn read_json_tag<T: serde::de::DeserializeOwned>(
    path: &Path,
    key: &str,
    what: &str,
) -> Result<Option<T>> {
    read_tag(path, key)?
        .map(|json| {
            serde_json::from_str(&json)
                .with_context(|| format!("{}: its {what} recipe is not readable", path.display()))
        })
        .transpose()
}

fn png_texts(path: &Path) -> Result<Vec<(String, String)>> {
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
    Ok(texts)
}

/// Reads the recipe from a PNG written by easel.
pub fn read_recipe(path: &Path) -> Result<Recipe> {
    let texts = png_texts(path)?;
    let get = |k: &str| {
        texts
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let Some(source) = get(KEY_SOURCE) else {
        for (key, command) in [(KEY_SAMPLE, "sample"), (KEY_SWEEP, "sweep")] {
            if get(key).is_some() {
                bail!(
                    "{} is a grid written by `easel {command}`: `easel {command} --from {}` makes it again",
                    path.display(),
                    path.display()
                );
            }
        }
        bail!(
            "{} carries no easel recipe (renders, favourites, exports, sample grids and sweep sheets written as .png do)",
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
        knobs: match get(KEY_KNOBS) {
            None => Default::default(),
            Some(text) => serde_json::from_str(&text).with_context(|| {
                format!("{}: the recipe's knobs are not readable", path.display())
            })?,
        },
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
