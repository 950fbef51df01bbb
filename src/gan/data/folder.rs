//! Reading a folder of pictures: a walk that follows each symlink once, strict decoding
//! (a truncated or corrupt file is skipped with its reason, never trained on), EXIF
//! orientation, and any pixel format turned into u8 at training size.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use image::{imageops::FilterType, DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::Skip;

/// Extensions easel decodes.
const DECODED: &[&str] = &["png", "jpg", "jpeg", "jpe", "jfif", "gif", "bmp", "webp"];
/// Picture formats a folder may hold that easel cannot read: reported, not silently ignored.
const NOT_DECODED: &[&str] = &[
    "tif", "tiff", "heic", "heif", "avif", "jxl", "ico", "psd", "svg", "raw", "dng", "cr2", "nef",
    "arw",
];

/// An image file found by the walk.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    /// Path under the root, with `/` separators.
    pub rel: String,
    /// First folder under the root ("" for files in the root itself).
    pub class: String,
    pub len: u64,
    pub mtime_ns: u128,
}

/// A path that led to a file the walk had already found: a symlink (hard links are not
/// detected; only paths that canonicalise to the same file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Link {
    pub file: String,
    pub same_as: String,
}

#[derive(Debug, Default)]
pub struct Walk {
    pub files: Vec<Entry>,
    pub skipped: Vec<Skip>,
    pub links: Vec<Link>,
}

/// Lists the image files under `root`, sorted within each folder. Symlinks are followed,
/// each folder and file once (by canonical path), so a loop ends and a file reached twice
/// counts once.
/// Names starting with `.` are ignored (`.git`, macOS `._photo.jpg` sidecars).
pub fn walk(root: &Path) -> Result<Walk> {
    let canon = std::fs::canonicalize(root)
        .with_context(|| format!("cannot read data folder {}", root.display()))?;
    if !canon.is_dir() {
        anyhow::bail!("data folder {} is not a folder", root.display());
    }
    std::fs::read_dir(root)
        .with_context(|| format!("cannot read data folder {}", root.display()))?;
    let mut w = Walker {
        dirs: HashSet::from([canon]),
        files: HashMap::new(),
        links: VecDeque::new(),
        out: Walk::default(),
    };
    w.visit(root, "")?;
    w.follow_links()?;
    Ok(w.out)
}

struct Walker {
    dirs: HashSet<PathBuf>,
    /// Canonical path → the first `rel` that reached it.
    files: HashMap<PathBuf, String>,
    /// Symlinks met, to follow once the real tree is read.
    links: VecDeque<(PathBuf, String)>,
    out: Walk,
}

impl Walker {
    fn skip(&mut self, rel: &str, reason: impl Into<String>) {
        self.out.skipped.push(Skip {
            file: rel.to_string(),
            reason: reason.into(),
        });
    }

    fn visit(&mut self, dir: &Path, rel: &str) -> Result<()> {
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) => {
                self.skip(rel, format!("cannot read folder: {e}"));
                return Ok(());
            }
        };
        let mut names: Vec<std::ffi::OsString> =
            read.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        names.sort();
        for name in names {
            let text = name.to_string_lossy().into_owned();
            if text.starts_with('.') {
                continue;
            }
            let path = dir.join(&name);
            let child = if rel.is_empty() {
                text
            } else {
                format!("{rel}/{text}")
            };
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
                self.links.push_back((path, child));
            } else {
                self.entry(path, child)?;
            }
        }
        Ok(())
    }

    /// Symlinks are followed after the real tree, so a file's own path (and class) wins
    /// over a link to it wherever the link sorts.
    fn follow_links(&mut self) -> Result<()> {
        while let Some((path, child)) = self.links.pop_front() {
            self.entry(path, child)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: PathBuf, child: String) -> Result<()> {
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink());
                if link {
                    self.skip(&child, format!("broken symbolic link: {e}"));
                } else {
                    self.skip(&child, e.to_string());
                }
                return Ok(());
            }
        };
        if meta.is_dir() {
            let Ok(canon) = std::fs::canonicalize(&path) else {
                self.skip(&child, "cannot resolve folder path");
                return Ok(());
            };
            // A folder already read: a symlink loop, or a second link to it.
            if self.dirs.insert(canon) {
                self.visit(&path, &child)?;
            }
            return Ok(());
        }
        let ext = Path::new(&child)
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if NOT_DECODED.contains(&ext.as_str()) {
            self.skip(
                &child,
                format!("easel cannot read .{ext} files; convert to PNG or JPEG"),
            );
            return Ok(());
        }
        if !meta.is_file() || !DECODED.contains(&ext.as_str()) {
            return Ok(());
        }
        let canon = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if let Some(first) = self.files.get(&canon) {
            self.out.links.push(Link {
                file: child,
                same_as: first.clone(),
            });
            return Ok(());
        }
        self.files.insert(canon, child.clone());
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let class = match child.split_once('/') {
            Some((top, _)) => top.to_string(),
            None => String::new(),
        };
        self.out.files.push(Entry {
            path,
            rel: child,
            class,
            len: meta.len(),
            mtime_ns,
        });
        Ok(())
    }
}

/// Decodes a picture, or says why not. Orientation from EXIF is applied.
pub fn decode(path: &Path) -> Result<DynamicImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let format = image::guess_format(&bytes)
        .or_else(|_| ImageFormat::from_path(path))
        .map_err(|_| "not a picture (unknown format)".to_string())?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(&bytes) {
        return Err("truncated JPEG (no end-of-image marker after the last scan)".into());
    }
    let mut decoder = ImageReader::with_format(Cursor::new(&bytes[..]), format)
        .into_decoder()
        .map_err(|e| e.to_string())?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The JPEG decoder fills in what a cut-short file lacks with grey and reports success, so
/// completeness is checked on the bytes: a whole JPEG has an end-of-image marker (FF D9)
/// after the start of its last scan (FF DA). Entropy-coded data cannot hold FF D9 (an FF
/// there is followed by 00 or a restart marker), and a progressive file cut between scans
/// lacks it too.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[sos + 2..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// How pictures become training images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub size: u32,
    pub channels: usize,
    /// Centre square crop before resizing (else the picture is stretched to a square).
    pub crop: bool,
    /// What transparency is composited onto (channels 1 and 3).
    pub background: [u8; 3],
}

impl Fit {
    /// `img` as u8, channel-major `[C, S, S]`, appended to `out`.
    pub fn apply(&self, img: DynamicImage, out: &mut Vec<u8>) {
        let img = if self.crop && img.width() != img.height() {
            let side = img.width().min(img.height());
            img.crop_imm(
                (img.width() - side) / 2,
                (img.height() - side) / 2,
                side,
                side,
            )
        } else {
            img
        };
        let s = self.size;
        let resize = |img: DynamicImage| {
            if img.width() == s && img.height() == s {
                img
            } else {
                img.resize_exact(s, s, FilterType::Triangle)
            }
        };
        if self.channels == 4 {
            return rgba_premultiplied(img, s, out);
        }
        // Composite before resizing, so a transparent pixel's hidden colour (often black)
        // does not bleed into its neighbours.
        let img = if img.color().has_alpha() {
            DynamicImage::ImageRgb8(composite(&img.to_rgba8(), self.background))
        } else {
            img
        };
        let img = resize(img);
        if self.channels == 1 {
            out.extend_from_slice(img.to_luma8().as_raw());
        } else {
            planar(img.to_rgb8().as_raw(), 3, out);
        }
    }
}

fn composite(rgba: &image::RgbaImage, bg: [u8; 3]) -> image::RgbImage {
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3] as u32;
        image::Rgb(std::array::from_fn(|c| {
            ((p[c] as u32 * a + bg[c] as u32 * (255 - a) + 127) / 255) as u8
        }))
    })
}

/// RGBA resized with premultiplied alpha (at 16 bits, so faint pixels keep their colour),
/// then unpremultiplied.
fn rgba_premultiplied(img: DynamicImage, s: u32, out: &mut Vec<u8>) {
    let mut px = img.to_rgba16();
    for p in px.pixels_mut() {
        let a = p.0[3] as u32;
        for c in 0..3 {
            p.0[c] = ((p.0[c] as u32 * a + 32767) / 65535) as u16;
        }
    }
    let px = if px.width() == s && px.height() == s {
        px
    } else {
        image::imageops::resize(&px, s, s, FilterType::Triangle)
    };
    let mut rgba = Vec::with_capacity((s * s * 4) as usize);
    for p in px.pixels() {
        let a = p.0[3] as u32;
        for c in 0..3 {
            let v = (p.0[c] as u32 * 65535 + a / 2)
                .checked_div(a)
                .map_or(0, |v| v.min(65535));
            rgba.push(((v + 128) / 257) as u8);
        }
        rgba.push(((a + 128) / 257) as u8);
    }
    planar(&rgba, 4, out);
}

/// Interleaved `[S·S, C]` to channel-major `[C, S·S]`.
fn planar(interleaved: &[u8], c: usize, out: &mut Vec<u8>) {
    for ch in 0..c {
        out.extend(interleaved.iter().skip(ch).step_by(c));
    }
}
