//! Per-class quality of a conditional generator: does every class look like its own
//! images (SWD against that class alone), and is every class still varied (diversity: the
//! mean pairwise distance of its samples over that of its real images; a class that
//! collapses to one picture goes towards 0)?

use anyhow::Result;
use candle_core::{DType, Tensor};

use super::classifier::{self, Classifier};
use super::data::Dataset;
use super::layers::Ctx;
use super::model::Generator;
use super::swd;
use crate::run::ClassScore;

/// Below this diversity a class is flagged (log, `easel eval`, the run panel).
pub const LOW_DIVERSITY: f64 = ClassScore::LOW_DIVERSITY;

/// Mean Euclidean distance between all pairs of `[N, …]` images (0 for fewer than two).
pub fn mean_pairwise_distance(images: &Tensor) -> Result<f64> {
    let n = images.dim(0)?;
    if n < 2 {
        return Ok(0.0);
    }
    let flat: Vec<Vec<f32>> = images.to_dtype(DType::F32)?.flatten_from(1)?.to_vec2()?;
    let mut sum = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let d: f32 = flat[i]
                .iter()
                .zip(&flat[j])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            sum += (d as f64).sqrt();
        }
    }
    Ok(sum / (n * (n - 1) / 2) as f64)
}

/// Scores each class of a conditional generator on up to `per_class` samples from fixed
/// noise (`seed`), against up to as many of that class's images; with a classifier of the
/// real classes, also how many of each class's samples it recognises as that class.
pub fn class_scores(
    g: &Generator,
    class_names: &[String],
    data: &Dataset,
    per_class: usize,
    seed: u64,
    noise_scale: f64,
    judge: Option<&Classifier>,
) -> Result<Vec<ClassScore>> {
    let ctx = Ctx {
        train: false,
        dropout_seed: 0,
        first_row: 0,
    };
    let mut out = vec![];
    for (label, name) in class_names.iter().enumerate() {
        // The data may be another folder (`easel eval --data`): match classes by name.
        let Some(data_label) = data.class_names.iter().position(|c| c == name) else {
            continue;
        };
        let real = data.class_reference(data_label, per_class, seed)?;
        let n = real.dim(0)?;
        if n < 2 {
            continue;
        }
        let z = super::train::scaled_noise(
            seed ^ label as u64,
            n,
            g.spec.latent,
            noise_scale,
            &real.device().clone(),
        )?;
        let fake = g.forward(&z, &vec![label; n], &ctx)?;
        let real_spread = mean_pairwise_distance(&real)?;
        let judged = judge.and_then(|c| Some((c, c.classes.iter().position(|n| n == name)?)));
        let fidelity = match judged {
            Some((c, k)) => Some(classifier::fidelity(&c.probabilities(&fake)?, k)?),
            None => None,
        };
        out.push(ClassScore {
            fidelity,
            name: name.clone(),
            swd: swd::swd_tensors(&real, &fake, seed)?.mean,
            diversity: if real_spread > 0.0 {
                mean_pairwise_distance(&fake)? / real_spread
            } else {
                0.0
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::mean_pairwise_distance;
    use candle_core::{Device, Tensor};

    #[test]
    fn copies_of_one_image_have_no_spread_and_distances_are_euclidean() {
        let same = Tensor::ones((5, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(mean_pairwise_distance(&same).unwrap(), 0.0);
        // Three images at 0, 1 and 3 along one axis of a 4-pixel image: distances 2, 6, 4.
        let v: Vec<f32> = [0.0, 1.0, 3.0].iter().flat_map(|&a| [a; 4]).collect();
        let t = Tensor::from_vec(v, (3, 1, 2, 2), &Device::Cpu).unwrap();
        assert!((mean_pairwise_distance(&t).unwrap() - 4.0).abs() < 1e-9);
    }
}
