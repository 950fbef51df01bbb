//! DiffAugment and the adaptive probability: identity at p = 0, each policy changes images
//! at p = 1, seeded determinism, gradients through every transform, translation and
//! cutout against hand-computed results, value ranges, and ADA's controller.

use candle_core::{DType, Device, Tensor, Var};
use easel::gan::augment::{
    apply, augment, draws, seed_for, sign_mean, AdaptiveP, Cutout, Policy, SampleAug,
};

/// A deterministic batch in [−1, 1] where every value differs from its neighbours.
fn batch(n: usize, c: usize, h: usize, w: usize) -> Tensor {
    let v: Vec<f32> = (0..n * c * h * w)
        .map(|i| ((i as f32 * 0.37).sin() * 0.9 + (i as f32 * 0.011).cos() * 0.1).clamp(-1.0, 1.0))
        .collect();
    Tensor::from_vec(v, (n, c, h, w), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    values(t).iter().map(|v| v.to_bits()).collect()
}

fn only(name: &str) -> Policy {
    name.parse().unwrap()
}

#[test]
fn identity_at_p_zero_and_with_no_policy() {
    let x = batch(4, 3, 16, 16);
    for seed in [0, 1, 99] {
        let y = augment(&x, &Policy::ALL, 0.0, seed).unwrap();
        assert_eq!(bits(&y), bits(&x));
        let y = augment(&x, &Policy::NONE, 1.0, seed).unwrap();
        assert_eq!(bits(&y), bits(&x));
    }
    // Drawn at p = 0, nothing is on.
    assert!(draws(8, (16, 16), &Policy::ALL, 0.0, 3)
        .unwrap()
        .iter()
        .all(|d| *d == SampleAug::default()));
}

#[test]
fn each_policy_changes_every_image_at_p_one() {
    let (n, c, h, w) = (8, 3, 32, 32);
    let x = batch(n, c, h, w);
    let per = c * h * w;
    for name in ["color", "translation", "cutout"] {
        let policy = only(name);
        let d = draws(n, (h, w), &policy, 1.0, 5).unwrap();
        let y = augment(&x, &policy, 1.0, 5).unwrap();
        assert_eq!(y.dims(), x.dims(), "{name}");
        let (xv, yv) = (values(&x), values(&y));
        for i in 0..n {
            // A translation may draw (0, 0), which leaves the image alone.
            let identity = d[i].translation == Some((0, 0));
            let changed = xv[i * per..(i + 1) * per] != yv[i * per..(i + 1) * per];
            assert_eq!(changed, !identity, "{name}, image {i}: {:?}", d[i]);
        }
        assert_ne!(xv, yv, "{name} changed nothing");
    }
}

#[test]
fn policy_strings_round_trip() {
    let p: Policy = "color, translation,cutout".parse().unwrap();
    assert_eq!(p, Policy::ALL);
    assert_eq!(p.to_string(), "color,translation,cutout");
    assert_eq!(
        "cutout,color".parse::<Policy>().unwrap().to_string(),
        "color,cutout"
    );
    assert_eq!("".parse::<Policy>().unwrap(), Policy::NONE);
    assert_eq!(Policy::NONE.to_string(), "none");
    assert_eq!("none".parse::<Policy>().unwrap(), Policy::NONE);
    let err = "color,flip".parse::<Policy>().unwrap_err();
    assert!(err.to_string().contains("\"flip\""), "{err}");
    let json = serde_json::to_string(&Policy::ALL).unwrap();
    assert_eq!(json, "\"color,translation,cutout\"");
    assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), Policy::ALL);
    assert!(serde_json::from_str::<Policy>("\"blur\"").is_err());
}

#[test]
fn same_seed_same_images_other_seed_other_images() {
    let x = batch(6, 3, 16, 16);
    let a = augment(&x, &Policy::ALL, 1.0, 42).unwrap();
    let b = augment(&x, &Policy::ALL, 1.0, 42).unwrap();
    let c = augment(&x, &Policy::ALL, 1.0, 43).unwrap();
    assert_eq!(bits(&a), bits(&b));
    assert_ne!(bits(&a), bits(&c));
    // The trainer's seeds: distinct per step and salt, stable across calls.
    assert_eq!(seed_for(7, 100, 1), seed_for(7, 100, 1));
    assert_ne!(seed_for(7, 100, 1), seed_for(7, 101, 1));
    assert_ne!(seed_for(7, 100, 1), seed_for(7, 100, 2));
    assert_ne!(seed_for(7, 100, 1), seed_for(8, 100, 1));
}

#[test]
fn raising_p_only_adds_transforms() {
    let low = draws(64, (32, 32), &Policy::ALL, 0.3, 11).unwrap();
    let high = draws(64, (32, 32), &Policy::ALL, 0.7, 11).unwrap();
    let count = |d: &[SampleAug]| {
        d.iter()
            .map(|s| {
                [
                    s.brightness.is_some(),
                    s.saturation.is_some(),
                    s.contrast.is_some(),
                    s.translation.is_some(),
                    s.cutout.is_some(),
                ]
                .iter()
                .filter(|&&on| on)
                .count()
            })
            .sum::<usize>()
    };
    for (l, h) in low.iter().zip(&high) {
        // Whatever is on at 0.3 is on, with the same value, at 0.7.
        assert!(l.brightness.is_none() || l.brightness == h.brightness);
        assert!(l.saturation.is_none() || l.saturation == h.saturation);
        assert!(l.contrast.is_none() || l.contrast == h.contrast);
        assert!(l.translation.is_none() || l.translation == h.translation);
        assert!(l.cutout.is_none() || l.cutout == h.cutout);
    }
    let (cl, ch) = (count(&low), count(&high));
    // 64 images × 5 coins: about 96 and 224 on.
    assert!(
        (60..=130).contains(&cl) && (190..=260).contains(&ch),
        "{cl} {ch}"
    );
}

#[test]
fn images_without_a_transform_keep_their_values() {
    let (n, c, h, w) = (16, 3, 16, 16);
    let x = batch(n, c, h, w);
    let d = draws(n, (h, w), &Policy::ALL, 0.25, 8).unwrap();
    let y = apply(&x, &d).unwrap();
    let (xv, yv) = (values(&x), values(&y));
    let per = c * h * w;
    let mut untouched = 0;
    for (i, s) in d.iter().enumerate() {
        if *s == SampleAug::default() {
            untouched += 1;
            assert_eq!(xv[i * per..(i + 1) * per], yv[i * per..(i + 1) * per]);
        }
    }
    assert!(
        untouched > 0 && untouched < n,
        "{untouched} of {n} untouched"
    );
}

#[test]
fn gradients_flow_through_every_transform() {
    let x = Var::from_tensor(&batch(4, 3, 16, 16)).unwrap();
    for name in ["color", "translation", "cutout", "color,translation,cutout"] {
        let y = augment(x.as_tensor(), &only(name), 1.0, 3).unwrap();
        // A weighted sum: a plain sum hides the colour transforms (they keep each
        // image's total).
        let weights = batch(4, 3, 16, 16).affine(0.5, 1.0).unwrap();
        let loss = (y * weights).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = values(grads.get(x.as_tensor()).expect("a gradient for x"));
        assert!(g.iter().all(|v| v.is_finite()), "{name}");
        let nonzero = g.iter().filter(|v| **v != 0.0).count();
        assert!(
            nonzero > g.len() / 4,
            "{name}: {nonzero} of {} non-zero",
            g.len()
        );
    }
}

#[test]
fn gradient_is_zero_exactly_where_cutout_removed_a_pixel() {
    let (h, w) = (16, 16);
    let x = Var::from_tensor(&batch(1, 1, h, w)).unwrap();
    let cut = Cutout {
        top: 2,
        left: 5,
        height: 8,
        width: 8,
    };
    let d = [SampleAug {
        cutout: Some(cut),
        ..Default::default()
    }];
    let y = apply(x.as_tensor(), &d).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let g = values(grads.get(x.as_tensor()).unwrap());
    for yy in 0..h {
        for xx in 0..w {
            let expect = if cut.contains(yy, xx) { 0.0 } else { 1.0 };
            assert_eq!(g[yy * w + xx], expect, "({yy}, {xx})");
        }
    }
}

#[test]
fn translation_moves_content_by_the_drawn_offsets() {
    let (c, h, w) = (2, 16, 16);
    let x = batch(1, c, h, w);
    let xv = values(&x);
    // A hand-made shift: content moves 2 down and 1 left.
    let d = [SampleAug {
        translation: Some((2, -1)),
        ..Default::default()
    }];
    let yv = values(&apply(&x, &d).unwrap());
    let at = |v: &[f32], ch: usize, y: usize, x: usize| v[(ch * h + y) * w + x];
    assert_eq!(at(&yv, 0, 5, 5), at(&xv, 0, 3, 6));
    assert_eq!(at(&yv, 1, 2, 0), at(&xv, 1, 0, 1));
    assert_eq!(at(&yv, 1, 1, 7), 0.0, "rows shifted in from above are zero");
    assert_eq!(
        at(&yv, 0, 9, 15),
        0.0,
        "the column shifted in from the right is zero"
    );
    // Drawn shifts: every value is the input's at (y − dy, x − dx), or zero off the edge.
    let n = 6;
    let x = batch(n, c, h, w);
    let xv = values(&x);
    let d = draws(n, (h, w), &only("translation"), 1.0, 21).unwrap();
    let yv = values(&apply(&x, &d).unwrap());
    let mut moved = 0;
    for (i, s) in d.iter().enumerate() {
        let (dy, dx) = s.translation.expect("p = 1 translates every image");
        assert!(
            dy.abs() <= 2 && dx.abs() <= 2,
            "16 px images shift by at most 16/8"
        );
        moved += usize::from((dy, dx) != (0, 0));
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let (sy, sx) = (y as isize - dy, xx as isize - dx);
                    let expect = if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                        xv[((i * c + ch) * h + sy as usize) * w + sx as usize]
                    } else {
                        0.0
                    };
                    assert_eq!(yv[((i * c + ch) * h + y) * w + xx], expect);
                }
            }
        }
    }
    assert!(moved > 0);
}

#[test]
fn cutout_zeroes_a_half_size_square_in_every_channel() {
    let (n, c, h, w) = (32, 3, 16, 16);
    let x = Tensor::ones((n, c, h, w), DType::F32, &Device::Cpu).unwrap();
    let d = draws(n, (h, w), &only("cutout"), 1.0, 4).unwrap();
    let yv = values(&apply(&x, &d).unwrap());
    let mut whole = 0;
    for (i, s) in d.iter().enumerate() {
        let cut = s.cutout.expect("p = 1 cuts every image");
        assert_eq!((cut.height, cut.width), (8, 8));
        let clip = |start: isize, len: usize, side: usize| {
            (start + len as isize).min(side as isize) - start.max(0)
        };
        let area = (clip(cut.top, cut.height, h) * clip(cut.left, cut.width, w)) as usize;
        whole += usize::from(area == 64);
        for ch in 0..c {
            let plane = &yv[(i * c + ch) * h * w..(i * c + ch + 1) * h * w];
            assert_eq!(
                plane.iter().filter(|v| **v == 0.0).count(),
                area,
                "image {i}"
            );
            for y in 0..h {
                for xx in 0..w {
                    let expect = if cut.contains(y, xx) { 0.0 } else { 1.0 };
                    assert_eq!(plane[y * w + xx], expect);
                }
            }
        }
    }
    assert!(whole > 0, "some squares lie wholly inside");
}

#[test]
fn output_shape_and_range() {
    let x = batch(16, 3, 32, 32);
    for seed in 0..4 {
        let y = augment(&x, &Policy::ALL, 1.0, seed).unwrap();
        assert_eq!(y.dims(), &[16, 3, 32, 32]);
        // Brightness ±0.5, saturation ×2 and contrast ×1.5 can take [−1, 1] at most to ±9.
        assert!(values(&y).iter().all(|v| v.is_finite() && v.abs() <= 9.0));
        let y = augment(&x, &only("translation,cutout"), 1.0, seed).unwrap();
        assert!(values(&y).iter().all(|v| (-1.0..=1.0).contains(v)));
    }
    // A grayscale batch and odd sizes work too.
    let g = batch(3, 1, 28, 27);
    assert_eq!(
        augment(&g, &Policy::ALL, 1.0, 1).unwrap().dims(),
        &[3, 1, 28, 27]
    );
}

#[test]
fn bad_input_is_an_error() {
    let x = batch(2, 3, 8, 8);
    assert!(augment(&x, &Policy::ALL, 1.5, 0).is_err());
    assert!(augment(&x, &Policy::ALL, f64::NAN, 0).is_err());
    assert!(augment(&x.flatten_all().unwrap(), &Policy::ALL, 1.0, 0).is_err());
    assert!(apply(&x, &[SampleAug::default()]).is_err());
}

#[test]
fn fast_enough_for_a_training_batch() {
    let x = Var::from_tensor(&batch(64, 3, 64, 64)).unwrap();
    let t = std::time::Instant::now();
    let y = augment(x.as_tensor(), &Policy::ALL, 1.0, 1).unwrap();
    let forward = t.elapsed();
    let _ = y.sum_all().unwrap().backward().unwrap();
    eprintln!(
        "augment 64x3x64x64: forward {:?}, forward + backward {:?}",
        forward,
        t.elapsed()
    );
}

#[test]
fn adaptive_p_follows_the_sign_of_real_logits() {
    let mut ada = AdaptiveP::new(64, AdaptiveP::IMAGES_TO_FULL);
    assert_eq!((ada.p, ada.target, ada.interval), (0.0, 0.6, 4));
    let step = 64.0 * 4.0 / AdaptiveP::IMAGES_TO_FULL;
    // Overfitting (sign mean above target): p rises, once per interval.
    for _ in 0..3 {
        assert_eq!(ada.update(0.9), None);
        assert_eq!(ada.p, 0.0);
    }
    assert_eq!(ada.update(0.9), Some(0.9));
    assert!((ada.p - step).abs() < 1e-12);
    for _ in 0..4 {
        ada.update(0.8);
    }
    assert!((ada.p - 2.0 * step).abs() < 1e-12);
    // r_t is the mean over the interval: 0.5 on average is below 0.6, p falls.
    for v in [1.0, 0.0, 1.0, 0.0] {
        ada.update(v);
    }
    assert_eq!(ada.last_rt, Some(0.5));
    assert!((ada.p - step).abs() < 1e-12);
    // Exactly on target leaves p alone; a non-finite value is ignored.
    ada.update(f64::NAN);
    for _ in 0..4 {
        ada.update(0.6);
    }
    assert!((ada.p - step).abs() < 1e-12);
    // Clamped to [0, 1]; it crosses the range in IMAGES_TO_FULL images.
    let steps_to_full = (AdaptiveP::IMAGES_TO_FULL / 64.0).ceil() as usize + 8;
    for _ in 0..steps_to_full {
        ada.update(1.0);
    }
    assert_eq!(ada.p, 1.0);
    for _ in 0..2 * steps_to_full {
        ada.update(-1.0);
    }
    assert_eq!(ada.p, 0.0);
    // Line up with an interval's start.
    while ada.update(-1.0).is_none() {}
    // Checkpointable mid-interval: the partial sum comes back too.
    ada.update(0.7);
    let json = serde_json::to_string(&ada).unwrap();
    let mut back: AdaptiveP = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ada);
    for _ in 0..3 {
        assert_eq!(back.update(0.7), ada.update(0.7));
    }
    assert_eq!(back, ada);
    assert!(ada.p > 0.0);
}

#[test]
fn sign_mean_of_logits() {
    let t = Tensor::new(&[[-2.0f32], [3.0], [0.5], [-1.0], [4.0]], &Device::Cpu).unwrap();
    assert!((sign_mean(&t).unwrap() - 0.2).abs() < 1e-6);
}
