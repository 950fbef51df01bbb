//! Training images: rendered by a Truchet or CPPN sketch (its classes become labels), or
//! read from a folder (labels from subfolder names; unreadable files skipped, counted).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use image::{imageops::FilterType, DynamicImage};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::{DataSource, GanSpec};
use crate::sketch;

pub struct Dataset {
    /// `[N, C, S, S]` in [−1, 1].
    pub images: Tensor,
    pub labels: Vec<usize>,
    /// Class names in label order; empty when the data has no classes.
    pub class_names: Vec<String>,
    /// Files that could not be read (folder datasets).
    pub skipped: Vec<PathBuf>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `n` distinct images drawn once from `seed` (the same set every time): the real
    /// side of evaluations.
    pub fn reference(&self, n: usize, seed: u64) -> Result<Tensor> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x2EF5);
        let mut idx: Vec<u32> = (0..self.len() as u32).collect();
        // A partial Fisher–Yates shuffle: the first n are a uniform sample.
        let n = n.min(idx.len());
        for i in 0..n {
            let j = rng.random_range(i..idx.len());
            idx.swap(i, j);
        }
        idx.truncate(n);
        let t = Tensor::from_vec(idx, n, self.images.device())?;
        Ok(self.images.index_select(&t, 0)?)
    }

    /// The batch for `step`: indices drawn with replacement from a generator seeded by
    /// (seed, step), so a resumed run sees exactly the batches it would have seen.
    pub fn batch(&self, seed: u64, step: u64, size: usize) -> Result<(Tensor, Vec<usize>)> {
        let mut rng =
            Pcg64Mcg::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xBA7C);
        let idx: Vec<u32> = (0..size)
            .map(|_| rng.random_range(0..self.len() as u32))
            .collect();
        let labels = idx.iter().map(|&i| self.labels[i as usize]).collect();
        let t = Tensor::from_vec(idx, size, self.images.device())?;
        Ok((self.images.index_select(&t, 0)?, labels))
    }
}

pub fn load(spec: &GanSpec, device: &Device) -> Result<Dataset> {
    match &spec.data {
        DataSource::Sketch { path, count } => from_sketch(spec, path, *count, device),
        DataSource::Folder { path, crop } => from_folder(spec, path, *crop, device),
    }
}

fn to_values(img: &DynamicImage, channels: usize, out: &mut Vec<f32>) {
    // Channel-major [C, S, S], scaled to [−1, 1].
    match channels {
        1 => out.extend(img.to_luma8().pixels().map(|p| p.0[0] as f32 / 127.5 - 1.0)),
        _ => {
            let rgb = img.to_rgb8();
            for c in 0..3 {
                out.extend(rgb.pixels().map(|p| p.0[c] as f32 / 127.5 - 1.0));
            }
        }
    }
}

fn from_sketch(spec: &GanSpec, path: &Path, count: usize, device: &Device) -> Result<Dataset> {
    let sketch = sketch::load(path)?;
    let variants: Vec<(String, sketch::Spec)> = if sketch.classes.is_empty() {
        vec![(String::new(), sketch.spec.clone())]
    } else {
        sketch.classes.clone()
    };
    let s = spec.image_size as u32;
    let rendered: Vec<(Vec<f32>, usize)> = (0..count)
        .into_par_iter()
        .map(|k| -> Result<(Vec<f32>, usize)> {
            let label = k % variants.len();
            let mut v = variants[label].1.clone();
            v.set_seed(v.seed().wrapping_add(k as u64));
            v.set_size(s, s);
            let img = v.render()?;
            let mut values = Vec::with_capacity(spec.channels * (s * s) as usize);
            to_values(&img, spec.channels, &mut values);
            Ok((values, label))
        })
        .collect::<Result<_>>()?;
    let labels = rendered.iter().map(|(_, l)| *l).collect();
    let flat: Vec<f32> = rendered.into_iter().flat_map(|(v, _)| v).collect();
    let images = Tensor::from_vec(flat, (count, spec.channels, s as usize, s as usize), device)?;
    let class_names = if sketch.classes.is_empty() {
        vec![]
    } else {
        variants.into_iter().map(|(n, _)| n).collect()
    };
    Ok(Dataset {
        images,
        labels,
        class_names,
        skipped: vec![],
    })
}

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "bmp", "webp"];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read data folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
    Ok(())
}

fn from_folder(spec: &GanSpec, root: &Path, crop: bool, device: &Device) -> Result<Dataset> {
    let mut files = Vec::new();
    walk(root, &mut files)?;
    // The label is the first folder under the root ("" for images in the root itself).
    let class_of = |p: &Path| -> String {
        let rel = p.strip_prefix(root).unwrap_or(p);
        let parts: Vec<_> = rel.components().collect();
        if parts.len() > 1 {
            parts[0].as_os_str().to_string_lossy().into_owned()
        } else {
            String::new()
        }
    };
    let mut class_names: Vec<String> = files.iter().map(|p| class_of(p)).collect();
    class_names.sort();
    class_names.dedup();
    let s = spec.image_size as u32;
    let loaded: Vec<Option<(Vec<f32>, usize)>> = files
        .par_iter()
        .map(|p| {
            let img = image::open(p).ok()?;
            let img = if crop {
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
            let img = img.resize_exact(s, s, FilterType::Triangle);
            let mut values = Vec::new();
            to_values(&img, spec.channels, &mut values);
            let label = class_names.binary_search(&class_of(p)).expect("listed");
            Some((values, label))
        })
        .collect();
    let skipped: Vec<PathBuf> = files
        .iter()
        .zip(&loaded)
        .filter(|(_, l)| l.is_none())
        .map(|(p, _)| p.clone())
        .collect();
    let good: Vec<(Vec<f32>, usize)> = loaded.into_iter().flatten().collect();
    if good.is_empty() {
        bail!(
            "no readable images under {} ({} files skipped)",
            root.display(),
            skipped.len()
        );
    }
    let labels: Vec<usize> = good.iter().map(|(_, l)| *l).collect();
    let n = good.len();
    let flat: Vec<f32> = good.into_iter().flat_map(|(v, _)| v).collect();
    let images = Tensor::from_vec(flat, (n, spec.channels, s as usize, s as usize), device)?;
    let class_names = if class_names.len() == 1 && class_names[0].is_empty() {
        vec![]
    } else {
        class_names
    };
    Ok(Dataset {
        images,
        labels,
        class_names,
        skipped,
    })
}
