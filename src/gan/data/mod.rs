//! Training images: rendered by a Truchet or CPPN sketch (its classes become labels), or
//! read from a folder (labels from subfolder names; files that cannot be read are skipped
//! with their reason). Images are kept as u8 at training size, channel-major; a run keeps a
//! folder's images in a memory-mapped cache file (see `cache`), and batches are converted
//! to f32 in [−1, 1] per step.

pub mod cache;
pub mod folder;

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::train::Progress;
use super::{DataSource, GanSpec};
use crate::run::RunDir;
use folder::Fit;

/// A loaded data sketch (`data: #{ from: "x.rhai" }`): its classes, and any picture of
/// them. Loading sketches is the work of `spec`, the layer above the GAN's, so the caller
/// hands in an [`OpenSketch`] (`easel::spec::data_sketch`) and this layer never calls up.
pub trait DataSketch: Sync {
    /// Class names in order; empty when the sketch lists none (its pictures are one
    /// unnamed class).
    fn class_names(&self) -> Vec<String>;
    /// Picture `k` of class `class` (0 when there are no classes) at `side`×`side`: the
    /// class's spec with its seed plus `k`.
    fn picture(&self, class: usize, k: u64, side: u32) -> Result<image::DynamicImage>;
}

/// Loads the data sketch at a path.
pub type OpenSketch = fn(&Path) -> Result<Box<dyn DataSketch>>;

/// A file that was not trained on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// Path under the data folder.
    pub file: String,
    pub reason: String,
}

/// What was read and how: the run's `data.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// "folder" or "sketch".
    pub kind: String,
    /// The folder, or the data sketch.
    pub source: PathBuf,
    pub images: usize,
    pub image_size: usize,
    pub channels: usize,
    /// How pictures were brought to training size.
    pub fit: String,
    /// What became of transparency.
    pub alpha: String,
    /// Images per class ("" for pictures in the folder itself).
    pub classes: BTreeMap<String, usize>,
    /// Files used, per class, relative to the folder.
    pub files: BTreeMap<String, Vec<String>>,
    pub skipped: Vec<Skip>,
    /// Groups of files whose training images are identical (all of them are used).
    pub duplicates: Vec<Vec<String>>,
    /// Paths that led to a file already read (symlinks): each file is used once.
    pub links: Vec<folder::Link>,
    /// The cache file: "built", "reused", or "" when images are only in memory.
    pub cache: String,
}

/// How many skip reasons `easel train` prints before pointing at data.json.
const REASONS_SHOWN: usize = 5;

impl Report {
    /// One line: counts, classes, skips, duplicates, the fit and the cache.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "data: {} images from {}",
            self.images,
            self.source.display()
        );
        if self.classes.len() > 1 {
            let per: Vec<String> = self
                .classes
                .iter()
                .map(|(c, n)| format!("{} {n}", if c.is_empty() { "(top)" } else { c }))
                .collect();
            s += &format!(" in {} classes ({})", self.classes.len(), per.join(", "));
        }
        if self.kind == "folder" {
            s += &format!(
                "; {} skipped, {} duplicate groups",
                self.skipped.len(),
                self.duplicates.len()
            );
            if !self.links.is_empty() {
                s += &format!(", {} links to files already read", self.links.len());
            }
            s += &format!("; {}; {}", self.fit, self.alpha);
        }
        if !self.cache.is_empty() {
            s += &format!("; cache {}", self.cache);
        }
        s
    }

    /// The summary and the first few skip reasons.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = vec![self.summary()];
        for s in self.skipped.iter().take(REASONS_SHOWN) {
            notes.push(format!("  skipped {}: {}", s.file, s.reason));
        }
        if self.skipped.len() > REASONS_SHOWN {
            notes.push(format!(
                "  … and {} more (all reasons in data.json)",
                self.skipped.len() - REASONS_SHOWN
            ));
        }
        notes
    }
}

enum Pixels {
    Memory(Vec<u8>),
    Mapped(cache::Mapped),
}

pub struct Dataset {
    /// `[N, C, S, S]` u8.
    pixels: Pixels,
    pub labels: Vec<usize>,
    /// Class names in label order; empty when the data has no classes.
    pub class_names: Vec<String>,
    pub channels: usize,
    pub size: usize,
    pub report: Report,
    device: Device,
}

impl Dataset {
    /// A dataset from u8 pixels, `[N, C, S, S]` channel-major.
    pub fn from_pixels(
        pixels: Vec<u8>,
        labels: Vec<usize>,
        class_names: Vec<String>,
        channels: usize,
        size: usize,
        device: &Device,
    ) -> Result<Self> {
        if pixels.len() != labels.len() * channels * size * size {
            bail!(
                "{} bytes of pixels for {} images of {channels}×{size}×{size}",
                pixels.len(),
                labels.len()
            );
        }
        Ok(Dataset {
            pixels: Pixels::Memory(pixels),
            labels,
            class_names,
            channels,
            size,
            report: Report::default(),
            device: device.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the images are read from a memory-mapped cache file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.pixels, Pixels::Mapped(_))
    }

    fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    fn bytes(&self) -> &[u8] {
        match &self.pixels {
            Pixels::Memory(v) => v,
            Pixels::Mapped(m) => m.pixels(),
        }
    }

    /// Image `i` as stored: u8, `[C, S, S]`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.bytes()[i * self.image_len()..][..self.image_len()]
    }

    fn to_tensor(&self, idx: impl ExactSizeIterator<Item = usize>) -> Result<Tensor> {
        let n = idx.len();
        let mut v = Vec::with_capacity(n * self.image_len());
        for i in idx {
            v.extend(self.image(i).iter().map(|&p| p as f32 / 127.5 - 1.0));
        }
        Ok(Tensor::from_vec(
            v,
            (n, self.channels, self.size, self.size),
            &self.device,
        )?)
    }

    /// Images `idx`, `[N, C, S, S]` f32 in [−1, 1].
    pub fn tensor_of(&self, idx: &[usize]) -> Result<Tensor> {
        self.to_tensor(idx.iter().copied())
    }

    /// All images, `[N, C, S, S]` f32 in [−1, 1] (for small data and tests).
    pub fn images(&self) -> Result<Tensor> {
        self.to_tensor(0..self.len())
    }

    /// `n` distinct images drawn once from `seed` (the same set every time): the real
    /// side of evaluations.
    pub fn reference(&self, n: usize, seed: u64) -> Result<Tensor> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x2EF5);
        let mut idx: Vec<usize> = (0..self.len()).collect();
        // A partial Fisher–Yates shuffle: the first n are a uniform sample.
        let n = n.min(idx.len());
        for i in 0..n {
            let j = rng.random_range(i..idx.len());
            idx.swap(i, j);
        }
        self.to_tensor(idx.into_iter().take(n))
    }

    /// Up to `n` distinct images of class `label`, drawn once from `seed`.
    pub fn class_reference(&self, label: usize, n: usize, seed: u64) -> Result<Tensor> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xC1A5 ^ label as u64);
        let mut idx: Vec<usize> = (0..self.len())
            .filter(|&i| self.labels[i] == label)
            .collect();
        let n = n.min(idx.len());
        for i in 0..n {
            let j = rng.random_range(i..idx.len());
            idx.swap(i, j);
        }
        self.to_tensor(idx.into_iter().take(n))
    }

    /// The batch for `step`: indices drawn with replacement from a generator seeded by
    /// (seed, step), so a resumed run sees exactly the batches it would have seen.
    pub fn batch(&self, seed: u64, step: u64, size: usize) -> Result<(Tensor, Vec<usize>)> {
        self.batch_rows(seed, step, size, 0..size)
    }

    /// Rows `rows` of [`Dataset::batch`]'s batch: what one rank of several trains on. Only
    /// these images are read (from a mapped cache, only their pages).
    pub fn batch_rows(
        &self,
        seed: u64,
        step: u64,
        size: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<(Tensor, Vec<usize>)> {
        let mut rng =
            Pcg64Mcg::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xBA7C);
        let idx: Vec<u32> = (0..size)
            .map(|_| rng.random_range(0..self.len() as u32))
            .collect();
        let idx = &idx[rows];
        let labels = idx.iter().map(|&i| self.labels[i as usize]).collect();
        Ok((self.to_tensor(idx.iter().map(|&i| i as usize))?, labels))
    }
}

/// Loads the training images into memory (no files written). Sketch-made data needs
/// `open_sketch`; folder data does not use it.
pub fn load(spec: &GanSpec, device: &Device, open_sketch: Option<OpenSketch>) -> Result<Dataset> {
    match &spec.data {
        DataSource::Sketch { path, count } => from_sketch(spec, path, *count, device, open_sketch),
        DataSource::Folder {
            path,
            crop,
            background,
        } => {
            let fit = fit_of(spec, *crop, *background);
            let walk = folder::walk(path)?;
            let mut pixels = Vec::new();
            let read = read_folder(path, walk, fit, &ProgressBar::hidden(), |img| {
                pixels.extend_from_slice(img);
                Ok(())
            })?;
            let mut data = Dataset::from_pixels(
                pixels,
                read.labels,
                read.class_names,
                spec.channels,
                spec.image_size,
                device,
            )?;
            data.report = read.report;
            Ok(data)
        }
    }
}

/// Loads the training images for a run: a folder's go through the run's memory-mapped
/// cache (`data.cache`, built on first use with a progress bar and reused while the files,
/// fit and background are unchanged). Writes `data.json` and notes a summary.
pub fn load_for_run(
    spec: &GanSpec,
    run: &RunDir,
    device: &Device,
    progress: &mut dyn Progress,
    open_sketch: Option<OpenSketch>,
) -> Result<Dataset> {
    let data = match &spec.data {
        DataSource::Sketch { .. } => load(spec, device, open_sketch)?,
        DataSource::Folder {
            path,
            crop,
            background,
        } => {
            let (walk, fit, shape) = survey(spec, path, *crop, *background)?;
            let file = cache_path(run);
            match cache::open::<Manifest>(&file, shape)? {
                Ok((mapped, m)) => from_cache(mapped, m, spec, device),
                Err(why) => {
                    if file.exists() {
                        progress.note(&format!("rebuilding the image cache: {why}"));
                    }
                    let bar = progress.bar(walk.files.len() as u64, "reading pictures");
                    let mut writer = cache::Writer::create(&file, shape)?;
                    let read = read_folder(path, walk, fit, &bar, |img| writer.push(img));
                    bar.finish_and_clear();
                    let mut read = match read {
                        Ok(r) => r,
                        Err(e) => {
                            writer.abandon();
                            // The reasons are what a person needs when nothing was readable.
                            if let Some(nothing) = e.downcast_ref::<NothingReadable>() {
                                run.write_json(&data_json(run), &nothing.0)?;
                                bail!("{nothing}; all reasons are in {}", data_json(run).display());
                            }
                            return Err(e);
                        }
                    };
                    read.report.cache = "built".into();
                    let manifest = Manifest {
                        labels: read.labels,
                        class_names: read.class_names,
                        report: read.report,
                    };
                    let mapped = writer.finish(&manifest)?;
                    Dataset {
                        pixels: Pixels::Mapped(mapped),
                        labels: manifest.labels,
                        class_names: manifest.class_names,
                        channels: spec.channels,
                        size: spec.image_size,
                        report: manifest.report,
                        device: device.clone(),
                    }
                }
            }
        }
    };
    run.write_json(&data_json(run), &data.report)?;
    for line in data.report.notes() {
        progress.note(&line);
    }
    Ok(data)
}

/// What a rank other than 0 trains on: the same images as rank 0, read from the cache
/// rank 0 built for the run (a folder's), or drawn from the sketch (a sketch's). Writes
/// nothing.
pub fn load_for_rank(
    spec: &GanSpec,
    run: &RunDir,
    device: &Device,
    open_sketch: Option<OpenSketch>,
) -> Result<Dataset> {
    let DataSource::Folder {
        path,
        crop,
        background,
    } = &spec.data
    else {
        return load(spec, device, open_sketch);
    };
    let (_, _, shape) = survey(spec, path, *crop, *background)?;
    match cache::open::<Manifest>(&cache_path(run), shape)? {
        Ok((mapped, m)) => Ok(from_cache(mapped, m, spec, device)),
        Err(why) => bail!(
            "{}: this rank cannot use the image cache rank 0 built ({why}); every rank needs \
             the same pictures at the same path",
            cache_path(run).display()
        ),
    }
}

/// A folder's pictures, how they are fitted, and the shape (with its key) a run's cache
/// of them has.
fn survey(
    spec: &GanSpec,
    path: &Path,
    crop: bool,
    background: [u8; 3],
) -> Result<(folder::Walk, Fit, cache::Shape)> {
    let fit = fit_of(spec, crop, background);
    let walk = folder::walk(path)?;
    let shape = cache::Shape {
        channels: spec.channels,
        size: spec.image_size,
        key: folder_key(path, &walk, &fit),
    };
    Ok((walk, fit, shape))
}

fn from_cache(mapped: cache::Mapped, m: Manifest, spec: &GanSpec, device: &Device) -> Dataset {
    let mut report = m.report;
    report.cache = "reused".into();
    Dataset {
        pixels: Pixels::Mapped(mapped),
        labels: m.labels,
        class_names: m.class_names,
        channels: spec.channels,
        size: spec.image_size,
        report,
        device: device.clone(),
    }
}

/// The run's image cache.
pub fn cache_path(run: &RunDir) -> PathBuf {
    run.path.join("data.cache")
}

/// The run's record of what was read.
pub fn data_json(run: &RunDir) -> PathBuf {
    run.path.join("data.json")
}

/// Stored with the cached pixels.
#[derive(Serialize, Deserialize)]
struct Manifest {
    labels: Vec<usize>,
    class_names: Vec<String>,
    report: Report,
}

fn fit_of(spec: &GanSpec, crop: bool, background: [u8; 3]) -> Fit {
    Fit {
        size: spec.image_size as u32,
        channels: spec.channels,
        crop,
        background,
    }
}

/// Bumped when decoding or fitting changes, so old caches are rebuilt.
const READER_VERSION: u32 = 1;

fn folder_key(root: &Path, walk: &folder::Walk, fit: &Fit) -> u64 {
    // SipHash with fixed keys: stable within a build; a different Rust may hash
    // differently, which costs one rebuild of the cache.
    let mut h = DefaultHasher::new();
    READER_VERSION.hash(&mut h);
    (fit.size, fit.channels, fit.crop, fit.background).hash(&mut h);
    std::fs::canonicalize(root).ok().hash(&mut h);
    for e in &walk.files {
        (&e.rel, e.len, e.mtime_ns).hash(&mut h);
    }
    for s in &walk.skipped {
        (&s.file, &s.reason).hash(&mut h);
    }
    for l in &walk.links {
        (&l.file, &l.same_as).hash(&mut h);
    }
    h.finish()
}

struct FolderRead {
    labels: Vec<usize>,
    class_names: Vec<String>,
    report: Report,
}

/// A folder where no picture could be read; carries the report with every reason.
#[derive(Debug)]
struct NothingReadable(Report);

impl std::fmt::Display for NothingReadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.0;
        let first = r
            .skipped
            .first()
            .map(|s| format!(" (first: {}: {})", s.file, s.reason))
            .unwrap_or_default();
        write!(
            f,
            "no readable pictures in {}: {} files skipped{first}",
            r.source.display(),
            r.skipped.len()
        )
    }
}

impl std::error::Error for NothingReadable {}

/// Files decoded per parallel chunk: bounds the decoded images held at once.
const CHUNK: usize = 256;

/// Decodes and fits the walked files in parallel, a chunk at a time, handing each image to
/// `sink` in file order.
fn read_folder(
    root: &Path,
    walk: folder::Walk,
    fit: Fit,
    bar: &ProgressBar,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<FolderRead> {
    let mut report = Report {
        kind: "folder".into(),
        source: root.to_path_buf(),
        image_size: fit.size as usize,
        channels: fit.channels,
        fit: if fit.crop {
            format!("centre square crop, resized to {0}×{0}", fit.size)
        } else {
            format!("stretched to {0}×{0}", fit.size)
        },
        alpha: if fit.channels == 4 {
            "alpha kept as a 4th channel".into()
        } else {
            let [r, g, b] = fit.background;
            format!("transparency onto #{r:02x}{g:02x}{b:02x}")
        },
        skipped: walk.skipped,
        links: walk.links,
        ..Report::default()
    };
    let per = fit.channels * (fit.size * fit.size) as usize;
    let mut classes: Vec<String> = Vec::new();
    let mut used: Vec<&folder::Entry> = Vec::new();
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    for chunk in walk.files.chunks(CHUNK) {
        let decoded: Vec<Result<Vec<u8>, String>> = chunk
            .par_iter()
            .map(|e| {
                // A decoder that panics on a hostile file costs that file, not the run.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let img = folder::decode(&e.path)?;
                    let mut v = Vec::with_capacity(per);
                    fit.apply(img, &mut v);
                    Ok(v)
                }))
                .unwrap_or_else(|_| Err("the decoder crashed on this file".into()))
            })
            .collect();
        for (e, r) in chunk.iter().zip(decoded) {
            bar.inc(1);
            match r {
                Ok(px) => {
                    let mut h = DefaultHasher::new();
                    px.hash(&mut h);
                    by_hash.entry(h.finish()).or_default().push(used.len());
                    sink(&px)?;
                    classes.push(e.class.clone());
                    used.push(e);
                }
                Err(reason) => report.skipped.push(Skip {
                    file: e.rel.clone(),
                    reason,
                }),
            }
        }
    }
    report.skipped.sort_by(|a, b| a.file.cmp(&b.file));
    if used.is_empty() {
        return Err(anyhow::Error::new(NothingReadable(report)));
    }
    let mut class_names = classes.clone();
    class_names.sort();
    class_names.dedup();
    let labels: Vec<usize> = classes
        .iter()
        .map(|c| class_names.binary_search(c).unwrap_or(0))
        .collect();
    for e in &used {
        report
            .files
            .entry(e.class.clone())
            .or_default()
            .push(e.rel.clone());
    }
    report.classes = report
        .files
        .iter()
        .map(|(c, f)| (c.clone(), f.len()))
        .collect();
    report.images = used.len();
    let mut dups: Vec<Vec<String>> = by_hash
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|g| g.iter().map(|&i| used[i].rel.clone()).collect())
        .collect();
    dups.sort();
    report.duplicates = dups;
    let class_names = if class_names.len() == 1 && class_names[0].is_empty() {
        vec![]
    } else {
        class_names
    };
    Ok(FolderRead {
        labels,
        class_names,
        report,
    })
}

fn from_sketch(
    spec: &GanSpec,
    path: &Path,
    count: usize,
    device: &Device,
    open_sketch: Option<OpenSketch>,
) -> Result<Dataset> {
    let Some(open) = open_sketch else {
        bail!(
            "the data of this GAN is rendered by {}, and this caller cannot load sketches \
             (it passes no OpenSketch)",
            path.display()
        );
    };
    let sketch = open(path)?;
    let names = sketch.class_names();
    let variants = names.len().max(1);
    let s = spec.image_size as u32;
    let fit = fit_of(spec, false, [255, 255, 255]);
    let per = spec.channels * (s * s) as usize;
    let mut pixels = vec![0u8; count * per];
    pixels
        .par_chunks_mut(per)
        .enumerate()
        .try_for_each(|(k, out)| -> Result<()> {
            let mut img = Vec::with_capacity(per);
            fit.apply(sketch.picture(k % variants, k as u64, s)?, &mut img);
            out.copy_from_slice(&img);
            Ok(())
        })?;
    let labels: Vec<usize> = (0..count).map(|k| k % variants).collect();
    // Without classes, all pictures count under "".
    let counted = if names.is_empty() {
        vec![String::new()]
    } else {
        names.clone()
    };
    let mut classes = BTreeMap::new();
    for name in &counted {
        classes.insert(name.clone(), count / variants);
    }
    for name in counted.iter().take(count % variants) {
        *classes.entry(name.clone()).or_default() += 1;
    }
    let class_names = names;
    let mut data = Dataset::from_pixels(
        pixels,
        labels,
        class_names,
        spec.channels,
        spec.image_size,
        device,
    )?;
    data.report = Report {
        kind: "sketch".into(),
        source: path.to_path_buf(),
        images: count,
        image_size: spec.image_size,
        channels: spec.channels,
        fit: format!("rendered at {s}×{s}"),
        classes,
        ..Report::default()
    };
    Ok(data)
}
