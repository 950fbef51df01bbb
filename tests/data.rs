//! Reading a folder of pictures: strict decoding of odd files, symlinks followed once,
//! transparency, `channels: 4`, the run's cache and data.json.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::{easel_in, gan_spec};
use easel::gan::data::{self, Dataset};
use easel::gan::train::{self, Outcome, Silent, TrainOptions};
use easel::run::RunDir;
use easel::spec;
use image::{ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

const TINY: &str = r#"image_size: 28, latent: 8, g_widths: [16, 8], d_widths: [8, 16],
    kernel: 4, batch: 8, lr: 2e-3, ema: 0.9, seed: 5"#;

/// Loads `dir/data` with `channels` and extra data keys.
fn load(dir: &Path, channels: usize, data_keys: &str) -> Dataset {
    let (spec, _) = gan_spec(
        dir,
        &format!(
            r#"{TINY}, channels: {channels}, data: #{{ folder: "data", fit: "resize" {data_keys} }}"#
        ),
    );
    data::load(&spec, &Device::Cpu, None).unwrap()
}

fn data_dir(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// A picture with detail everywhere, so a JPEG of it is not mostly empty.
fn noisy(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 37 + y * 91 + (x * y) % 53) as u8;
        Rgb([v, v.wrapping_mul(3), 255 - v])
    })
}

fn jpeg_bytes(img: &RgbImage, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
    if let Some(e) = exif {
        enc.set_exif_metadata(e).unwrap();
    }
    enc.write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    out
}

/// Mean of each channel plane of image `i`, as stored (u8).
fn plane_means(d: &Dataset, i: usize) -> Vec<f64> {
    let px = d.image(i);
    let plane = d.size * d.size;
    px.chunks(plane)
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() / plane as f64)
        .collect()
}

fn reason_of<'a>(d: &'a Dataset, file: &str) -> &'a str {
    &d.report
        .skipped
        .iter()
        .find(|s| s.file == file)
        .unwrap_or_else(|| panic!("{file} not skipped: {:?}", d.report.skipped))
        .reason
}

#[test]
fn a_truncated_jpeg_is_skipped_with_its_reason_not_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    let whole = jpeg_bytes(&noisy(64, 64), None);
    std::fs::write(root.join("whole.jpg"), &whole).unwrap();
    std::fs::write(root.join("third.jpg"), &whole[..whole.len() / 3]).unwrap();
    // Only the end-of-image marker missing.
    std::fs::write(root.join("no_eoi.jpg"), &whole[..whole.len() - 2]).unwrap();
    // The image crate alone accepts the cut file (it fills the rest with grey): why
    // easel checks.
    assert!(image::load_from_memory(&whole[..whole.len() / 3]).is_ok());
    let d = load(dir.path(), 3, "");
    assert_eq!(d.len(), 1);
    assert_eq!(d.report.files[""], vec!["whole.jpg"]);
    assert!(reason_of(&d, "third.jpg").contains("truncated"));
    assert!(reason_of(&d, "no_eoi.jpg").contains("truncated"));
}

#[test]
fn truncated_png_corrupt_bytes_and_empty_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(noisy(64, 64))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(root.join("whole.png"), &png).unwrap();
    std::fs::write(root.join("half.png"), &png[..png.len() / 2]).unwrap();
    let mut flipped = png.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 16] {
        *b ^= 0x5A;
    }
    std::fs::write(root.join("flipped.png"), &flipped).unwrap();
    std::fs::write(root.join("noise.jpg"), b"\x01\x02 not a picture at all").unwrap();
    std::fs::write(root.join("empty.png"), b"").unwrap();
    std::fs::write(
        root.join("notes.txt"),
        b"ignored: not a picture's extension",
    )
    .unwrap();
    std::fs::write(root.join("scan.tiff"), b"II*\0").unwrap();
    let d = load(dir.path(), 3, "");
    assert_eq!(d.len(), 1, "{:?}", d.report.skipped);
    for f in ["half.png", "flipped.png", "noise.jpg", "empty.png"] {
        assert!(!reason_of(&d, f).is_empty());
    }
    assert!(reason_of(&d, "scan.tiff").contains(".tiff"));
    assert_eq!(d.report.skipped.len(), 5);
}

#[test]
fn truncated_gif_bmp_and_webp_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    let img =
        image::DynamicImage::ImageRgba8(image::DynamicImage::ImageRgb8(noisy(64, 64)).to_rgba8());
    for (ext, format) in [
        ("gif", image::ImageFormat::Gif),
        ("bmp", image::ImageFormat::Bmp),
        ("webp", image::ImageFormat::WebP),
    ] {
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
            .unwrap();
        std::fs::write(root.join(format!("whole.{ext}")), &bytes).unwrap();
        std::fs::write(root.join(format!("half.{ext}")), &bytes[..bytes.len() / 2]).unwrap();
    }
    let d = load(dir.path(), 3, "");
    assert_eq!(d.len(), 3, "{:?}", d.report.skipped);
    for ext in ["gif", "bmp", "webp"] {
        assert!(!reason_of(&d, &format!("half.{ext}")).is_empty());
    }
}

#[test]
fn sixteen_bit_gray_and_rgb_pngs_convert_to_eight_bits() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    image::ImageBuffer::<Rgb<u16>, _>::from_pixel(8, 8, Rgb([65535, 32896, 0]))
        .save(root.join("a_rgb16.png"))
        .unwrap();
    image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(8, 8, image::Luma([16448]))
        .save(root.join("b_gray16.png"))
        .unwrap();
    let d = load(dir.path(), 3, "");
    assert_eq!(d.len(), 2);
    assert_eq!(plane_means(&d, 0), vec![255.0, 128.0, 0.0]);
    assert_eq!(plane_means(&d, 1), vec![64.0, 64.0, 64.0]);
}

fn write_palette_png(path: &Path, trns: Option<&[u8]>) {
    let w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(w, 4, 4);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(vec![255u8, 0, 0, 0, 0, 255]);
    if let Some(t) = trns {
        enc.set_trns(t.to_vec());
    }
    let mut writer = enc.write_header().unwrap();
    // Top half palette entry 0, bottom half entry 1.
    let idx: Vec<u8> = (0..16).map(|k| (k >= 8) as u8).collect();
    writer.write_image_data(&idx).unwrap();
}

#[test]
fn palette_pngs_convert_with_their_transparency() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    write_palette_png(&root.join("a_opaque.png"), None);
    // Entry 1 (blue) fully transparent.
    write_palette_png(&root.join("b_trns.png"), Some(&[255, 0]));
    let d = load(dir.path(), 3, "");
    assert_eq!(d.len(), 2);
    let px = |i: usize, c: usize, y: usize| d.image(i)[(c * 28 + y) * 28 + 14];
    // Opaque: red on top, blue below.
    assert_eq!([px(0, 0, 2), px(0, 1, 2), px(0, 2, 2)], [255, 0, 0]);
    assert_eq!([px(0, 0, 25), px(0, 1, 25), px(0, 2, 25)], [0, 0, 255]);
    // Transparent blue becomes the white background.
    assert_eq!([px(1, 0, 25), px(1, 1, 25), px(1, 2, 25)], [255, 255, 255]);
}

#[test]
fn gray_with_alpha_is_composited_onto_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    image::ImageBuffer::<image::LumaA<u8>, _>::from_fn(8, 8, |_, y| {
        image::LumaA([40, if y < 4 { 255 } else { 0 }])
    })
    .save(root.join("la.png"))
    .unwrap();
    let d = load(dir.path(), 1, "");
    let px = d.image(0);
    assert_eq!(px[2 * 28 + 14], 40, "opaque gray kept");
    assert_eq!(px[25 * 28 + 14], 255, "transparent becomes white");
}

#[test]
fn cmyk_jpeg_converts_to_rgb() {
    // 16×16, written by Pillow 11 (`Image.new("CMYK", …).save(…, quality=95)`, an Adobe
    // APP14 inverted CMYK JPEG as Photoshop writes): the left half full cyan ink, the
    // right half no ink. Pillow reads it as (0, 255, 255) and white.
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    std::fs::write(root.join("cmyk.jpg"), CMYK_JPEG).unwrap();
    let d = load(dir.path(), 3, "");
    assert_eq!(d.len(), 1, "{:?}", d.report.skipped);
    let px = |c: usize, x: usize| d.image(0)[(c * 28 + 14) * 28 + x] as i32;
    for (c, want) in [(0, 0), (1, 255), (2, 255)] {
        assert!((px(c, 3) - want).abs() <= 8, "left {c}: {}", px(c, 3));
    }
    for c in 0..3 {
        assert!(px(c, 25) >= 247, "right {c}: {}", px(c, 25));
    }
}

/// TIFF-structured EXIF holding only an orientation.
fn exif_orientation(o: u16) -> Vec<u8> {
    let mut v = b"MM\0\x2A\0\0\0\x08".to_vec();
    v.extend_from_slice(&[0, 1]); // one entry
    v.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]); // Orientation, SHORT, count 1
    v.extend_from_slice(&o.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, no next IFD
    v
}

#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    // Left half black, right half white, stored sideways: orientation 6 says turn it
    // 90° clockwise to view, which puts the black half on top.
    let img = RgbImage::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    });
    std::fs::write(
        root.join("a_rotated.jpg"),
        jpeg_bytes(&img, Some(exif_orientation(6))),
    )
    .unwrap();
    std::fs::write(root.join("b_plain.jpg"), jpeg_bytes(&img, None)).unwrap();
    let d = load(dir.path(), 1, "");
    assert_eq!(d.len(), 2);
    let at = |i: usize, x: usize, y: usize| d.image(i)[y * 28 + x];
    assert!(
        at(0, 14, 2) < 30 && at(0, 14, 25) > 225,
        "rotated: black on top"
    );
    assert!(
        at(1, 2, 14) < 30 && at(1, 25, 14) > 225,
        "plain: black on the left"
    );
}

#[cfg(unix)]
#[test]
fn symlinks_are_followed_once_without_loops_or_double_counting() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    std::fs::create_dir_all(root.join("cats")).unwrap();
    std::fs::create_dir_all(root.join("dogs")).unwrap();
    RgbImage::from_pixel(8, 8, Rgb([10, 10, 10]))
        .save(root.join("cats/1.png"))
        .unwrap();
    RgbImage::from_pixel(8, 8, Rgb([200, 200, 200]))
        .save(root.join("dogs/2.png"))
        .unwrap();
    // A loop back to the root, a second link to a folder, a link to a file already
    // read, and a link to nothing.
    symlink(&root, root.join("cats/loop")).unwrap();
    symlink(root.join("dogs"), root.join("cats/dogs_again")).unwrap();
    symlink(root.join("cats/1.png"), root.join("dogs/1_link.png")).unwrap();
    symlink(root.join("gone.png"), root.join("dogs/broken.png")).unwrap();
    // A link that sorts before the file it points to: the file's own path still wins.
    symlink(root.join("dogs/2.png"), root.join("cats/0_link.png")).unwrap();
    let d = load(dir.path(), 3, "");
    assert_eq!(d.len(), 2);
    assert_eq!(d.class_names, vec!["cats", "dogs"]);
    assert_eq!(d.report.files["cats"], vec!["cats/1.png"]);
    assert_eq!(d.report.files["dogs"], vec!["dogs/2.png"]);
    let links: Vec<(&str, &str)> = d
        .report
        .links
        .iter()
        .map(|l| (l.file.as_str(), l.same_as.as_str()))
        .collect();
    assert_eq!(
        links,
        vec![
            ("cats/0_link.png", "dogs/2.png"),
            ("dogs/1_link.png", "cats/1.png")
        ]
    );
    assert!(reason_of(&d, "dogs/broken.png").contains("broken symbolic link"));
}

fn transparent_picture(root: &Path) {
    // Top half opaque green, bottom half transparent red.
    RgbaImage::from_fn(8, 8, |_, y| {
        if y < 4 {
            Rgba([0, 200, 0, 255])
        } else {
            Rgba([255, 0, 0, 0])
        }
    })
    .save(root.join("t.png"))
    .unwrap();
}

#[test]
fn transparency_is_composited_onto_white_or_the_named_background() {
    let dir = tempfile::tempdir().unwrap();
    transparent_picture(&data_dir(dir.path()));
    let px = |d: &Dataset, y: usize| -> [u8; 3] {
        std::array::from_fn(|c| d.image(0)[(c * 28 + y) * 28 + 14])
    };
    let white = load(dir.path(), 3, "");
    assert_eq!(px(&white, 2), [0, 200, 0]);
    assert_eq!(px(&white, 25), [255, 255, 255]);
    assert!(white.report.alpha.contains("#ffffff"));
    let navy = load(dir.path(), 3, r#", background: "navy""#);
    assert_eq!(px(&navy, 25), [20, 30, 80]);
    let hex = load(dir.path(), 3, r##", background: "#102030""##);
    assert_eq!(px(&hex, 25), [16, 32, 48]);
    let rgb = load(dir.path(), 3, ", background: [1, 2, 3]");
    assert_eq!(px(&rgb, 25), [1, 2, 3]);
}

#[test]
fn a_bad_background_or_channel_count_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let path = dir.path().join("bad.rhai");
    for (body, key) in [
        (
            r#"data: #{ folder: "data", background: "chartreuse" }"#,
            "chartreuse",
        ),
        (r#"channels: 2, data: #{ folder: "data" }"#, "channels"),
        (r#"channels: 5, data: #{ folder: "data" }"#, "channels"),
    ] {
        std::fs::write(&path, format!("#{{ kind: \"gan\", {body} }}")).unwrap();
        let err = spec::load(&path).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
}

#[test]
fn channels_4_keeps_alpha_and_trains_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    transparent_picture(&data_dir(dir.path()));
    let d = load(dir.path(), 4, "");
    assert_eq!(d.channels, 4);
    let px = |y: usize| -> [u8; 4] { std::array::from_fn(|c| d.image(0)[(c * 28 + y) * 28 + 14]) };
    assert_eq!(px(2), [0, 200, 0, 255]);
    assert_eq!(px(25)[3], 0, "transparent stays transparent");
    // No dark fringe: the resized edge keeps the opaque colour, only alpha fades.
    let edge: Vec<[u8; 4]> = (10..18).map(px).collect();
    for p in &edge {
        if p[3] > 0 {
            assert!(p[1] >= 190 && p[0] <= 10, "{edge:?}");
        }
    }
    let (spec, src) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, channels: 4, steps: 2, sample_every: 1, data: #{{ folder: "data" }}"#),
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    let opts = TrainOptions {
        steps: None,
        resume: false,
        ..Default::default()
    };
    assert_eq!(
        train::train(&run, &src, &spec, &opts, &mut Silent).unwrap(),
        Outcome::Done
    );
    // The training grids are previews: transparency over a checkerboard.
    let grid = image::open(&run.samples()[0]).unwrap();
    assert_eq!(grid.color(), image::ColorType::Rgb8);
    // `easel sample` writes what a person keeps: PNG keeps the alpha the generator drew
    // (the gaps between samples transparent), and draws the same again from its recipe;
    // JPEG has no alpha and shows the preview's checkerboard.
    let easel = |args: &[&str]| easel_in(dir.path(), args);
    let png = dir.path().join("kept.png");
    let run_path = run.path.to_str().unwrap();
    easel(&["sample", run_path, "-o", png.to_str().unwrap(), "-n", "4"]);
    let kept = image::open(&png).unwrap();
    assert_eq!(kept.color(), image::ColorType::Rgba8);
    let kept = kept.to_rgba8();
    assert_eq!(kept.get_pixel(0, 0)[3], 0, "gaps are transparent");
    let alphas: Vec<u8> = (2..30).map(|x| kept.get_pixel(x, 10)[3]).collect();
    assert!(alphas.iter().any(|&a| a > 0), "{alphas:?}");
    let again = dir.path().join("again.png");
    easel(&[
        "sample",
        "--from",
        png.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_eq!(image::open(&again).unwrap().to_rgba8(), kept);
    let jpg = dir.path().join("kept.jpg");
    easel(&["sample", run_path, "-o", jpg.to_str().unwrap(), "-n", "4"]);
    assert_eq!(image::open(&jpg).unwrap().color(), image::ColorType::Rgb8);
}

#[test]
fn crop_takes_the_centre_square_and_resize_stretches() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    // Red | green | blue in quarters, half, quarter: the centre square is all green.
    RgbImage::from_fn(40, 20, |x, _| match x {
        0..10 => Rgb([255, 0, 0]),
        10..30 => Rgb([0, 255, 0]),
        _ => Rgb([0, 0, 255]),
    })
    .save(root.join("wide.png"))
    .unwrap();
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, channels: 3, data: #{{ folder: "data" }}"#),
    );
    let cropped = data::load(&spec, &Device::Cpu, None).unwrap();
    assert_eq!(plane_means(&cropped, 0), vec![0.0, 255.0, 0.0]);
    assert!(cropped.report.fit.contains("centre square crop"));
    let stretched = load(dir.path(), 3, "");
    let m = plane_means(&stretched, 0);
    assert!(m[0] > 40.0 && m[2] > 40.0, "{m:?}");
    assert!(stretched.report.fit.contains("stretched"));
}

/// Notes the trainer would print.
#[derive(Default)]
struct Notes(Vec<String>);
impl train::Progress for Notes {
    fn note(&mut self, text: &str) {
        self.0.push(text.to_string());
    }
}

fn pictures(root: &Path) {
    for (class, shades) in [("cats", [10u8, 60, 110]), ("dogs", [160, 210, 250])] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for (k, s) in shades.iter().enumerate() {
            RgbImage::from_fn(16, 16, |x, y| Rgb([*s, (x * 16) as u8, (y * 16) as u8]))
                .save(root.join(class).join(format!("{k}.png")))
                .unwrap();
        }
    }
}

#[test]
fn data_json_lists_files_per_class_skips_duplicates_and_the_fit() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    pictures(&root);
    std::fs::copy(root.join("cats/0.png"), root.join("cats/0_copy.png")).unwrap();
    std::fs::write(root.join("dogs/bad.jpg"), b"\xFF\xD8\xFF not really").unwrap();
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, channels: 3, data: #{{ folder: "data", background: "cream" }}"#),
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    let mut notes = Notes::default();
    let d = data::load_for_run(&spec, &run, &Device::Cpu, &mut notes, None).unwrap();
    assert_eq!(d.len(), 7);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data::data_json(&run)).unwrap()).unwrap();
    assert_eq!(json["kind"], "folder");
    assert_eq!(json["images"], 7);
    assert_eq!(json["classes"], serde_json::json!({"cats": 4, "dogs": 3}));
    assert_eq!(
        json["files"]["cats"],
        serde_json::json!(["cats/0.png", "cats/0_copy.png", "cats/1.png", "cats/2.png"])
    );
    assert_eq!(json["skipped"][0]["file"], "dogs/bad.jpg");
    assert!(!json["skipped"][0]["reason"].as_str().unwrap().is_empty());
    assert_eq!(
        json["duplicates"],
        serde_json::json!([["cats/0.png", "cats/0_copy.png"]])
    );
    assert!(json["fit"].as_str().unwrap().contains("28×28"));
    assert!(json["alpha"].as_str().unwrap().contains("#faf3e0"));
    assert_eq!(json["cache"], "built");
    assert!(
        notes.0[0].starts_with("data: 7 images from")
            && notes.0[0].contains("cats 4, dogs 3")
            && notes.0[0].contains("1 skipped, 1 duplicate groups"),
        "{:?}",
        notes.0
    );
    assert!(
        notes.0[1].starts_with("  skipped dogs/bad.jpg: "),
        "{:?}",
        notes.0
    );
}

#[test]
fn a_folder_with_nothing_readable_fails_naming_a_reason_and_writes_data_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    std::fs::write(root.join("a.png"), b"nope").unwrap();
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, channels: 3, data: #{{ folder: "data" }}"#),
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    let err = data::load_for_run(&spec, &run, &Device::Cpu, &mut Silent, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("a.png") && err.contains("data.json"), "{err}");
    assert!(data::data_json(&run).exists());
    let left: Vec<_> = std::fs::read_dir(&run.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("cache"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn set_mtime(p: &Path, t: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn the_cache_is_built_once_reused_on_resume_and_rebuilt_when_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let root = data_dir(dir.path());
    pictures(&root);
    let (spec, src) = gan_spec(
        dir.path(),
        &format!(
            r#"{TINY}, channels: 3, steps: 4, checkpoint_every: 1, data: #{{ folder: "data" }}"#
        ),
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    let opts = |steps, resume| TrainOptions {
        steps: Some(steps),
        resume,
        ..Default::default()
    };
    train::train(&run, &src, &spec, &opts(2, false), &mut Silent).unwrap();
    let cache = data::cache_path(&run);
    let built = mtime(&cache);
    let report = |run: &RunDir| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(data::data_json(run)).unwrap()).unwrap()
    };
    assert_eq!(report(&run)["cache"], "built");
    std::thread::sleep(std::time::Duration::from_millis(20));
    train::train(&run, &src, &spec, &opts(4, true), &mut Silent).unwrap();
    assert_eq!(mtime(&cache), built, "the cache was rewritten on resume");
    assert_eq!(report(&run)["cache"], "reused");

    // Reuse decodes nothing: a picture turned to garbage with its old length and mtime
    // still reads as it was cached.
    let pic = root.join("cats/0.png");
    let (len, old) = (std::fs::metadata(&pic).unwrap().len(), mtime(&pic));
    std::fs::write(&pic, vec![0u8; len as usize]).unwrap();
    set_mtime(&pic, old);
    let d = data::load_for_run(&spec, &run, &Device::Cpu, &mut Silent, None).unwrap();
    assert!(d.is_mapped());
    assert_eq!((d.len(), d.report.cache.as_str()), (6, "reused"));

    // A changed file (its mtime) rebuilds, and the garbage is skipped.
    set_mtime(&pic, old + std::time::Duration::from_secs(5));
    let mut notes = Notes::default();
    let d = data::load_for_run(&spec, &run, &Device::Cpu, &mut notes, None).unwrap();
    assert_eq!((d.len(), d.report.cache.as_str()), (5, "built"));
    assert!(!reason_of(&d, "cats/0.png").is_empty());
    assert!(
        notes.0[0].contains("rebuilding the image cache"),
        "{:?}",
        notes.0
    );

    // Another fit or background is another cache.
    let (other, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, channels: 3, data: #{{ folder: "data", background: "black" }}"#),
    );
    let d = data::load_for_run(&other, &run, &Device::Cpu, &mut Silent, None).unwrap();
    assert_eq!(d.report.cache, "built");
}

#[test]
fn batches_from_the_mapped_cache_equal_batches_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    pictures(&data_dir(dir.path()));
    let (spec, _) = gan_spec(
        dir.path(),
        &format!(r#"{TINY}, channels: 3, data: #{{ folder: "data" }}"#),
    );
    let run = RunDir::at(&dir.path().join("run")).unwrap();
    let memory = data::load(&spec, &Device::Cpu, None).unwrap();
    let mapped = data::load_for_run(&spec, &run, &Device::Cpu, &mut Silent, None).unwrap();
    assert!(mapped.is_mapped() && !memory.is_mapped());
    for step in 0..4 {
        let (a, la) = memory.batch(5, step, 8).unwrap();
        let (b, lb) = mapped.batch(5, step, 8).unwrap();
        assert_eq!(la, lb);
        let (a, b): (Vec<f32>, Vec<f32>) = (
            a.flatten_all().unwrap().to_vec1().unwrap(),
            b.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}

const CMYK_JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01,
    0x01, 0x02, 0x02, 0x02, 0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04, 0x04, 0x03,
    0x04, 0x06, 0x05, 0x06, 0x06, 0x06, 0x05, 0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06, 0x07, 0x09,
    0x07, 0x06, 0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x06, 0x08, 0x0b, 0x0c,
    0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00, 0x14, 0x08, 0x00, 0x10, 0x00, 0x10,
    0x04, 0x43, 0x11, 0x00, 0x4d, 0x11, 0x00, 0x59, 0x11, 0x00, 0x4b, 0x11, 0x00, 0xff, 0xc4, 0x00,
    0x1f, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff, 0xc4,
    0x00, 0xb5, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00,
    0x00, 0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13,
    0x51, 0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15,
    0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
    0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46,
    0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66,
    0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86,
    0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4,
    0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2,
    0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9,
    0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5,
    0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x0e, 0x04, 0x43, 0x00, 0x4d, 0x00, 0x59, 0x00,
    0x4b, 0x00, 0x00, 0x3f, 0x00, 0xfe, 0x7f, 0xeb, 0xf7, 0xf2, 0xbf, 0x7f, 0x2b, 0xf7, 0xf2, 0xbf,
    0xbf, 0xca, 0x28, 0xa2, 0xbf, 0x80, 0x3a, 0x28, 0xa2, 0xbf, 0xbf, 0xca, 0x28, 0xa2, 0xbf, 0xff,
    0xd9,
];
