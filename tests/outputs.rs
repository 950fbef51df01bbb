//! Output files: the format follows the extension (or the command says why not), writes
//! are atomic even from two threads at once, and favourites never overwrite each other.

use std::path::Path;
use std::process::{Command, Output};

fn easel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const TRUCHET: &str = r#"#{ kind: "truchet", family: "arcs", size: 64, tile: 16, seed: 3 }"#;
const CPPN: &str =
    r#"#{ kind: "cppn", size: 32, z: 4, depth: 2, width: 8, animate: #{ frames: 4 } }"#;

#[test]
fn render_writes_the_format_its_extension_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.rhai"), TRUCHET).unwrap();
    for (name, format) in [
        ("t.png", image::ImageFormat::Png),
        ("t.jpg", image::ImageFormat::Jpeg),
        ("t.JPEG", image::ImageFormat::Jpeg),
        ("t.webp", image::ImageFormat::WebP),
        ("t.gif", image::ImageFormat::Gif),
    ] {
        let out = easel(dir.path(), &["render", "t.rhai", "-o", name]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), format, "{name}");
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (64, 64));
    }
    let out = easel(dir.path(), &["render", "t.rhai", "-o", "t.tiff"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "t.tiff: cannot write .tiff images; use .png (keeps the recipe), .jpg, .webp or .gif"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("t.tiff").exists());
}

#[test]
fn animate_and_sample_refuse_extensions_they_cannot_honour() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.rhai"), CPPN).unwrap();
    let out = easel(dir.path(), &["animate", "c.rhai", "-o", "a.png"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("`animate` writes a .gif"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("a.png").exists());
    let out = easel(dir.path(), &["animate", "c.rhai", "-o", "a.gif"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(dir.path().join("a.gif")).unwrap();
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Gif
    );

    // The shipped model stands in for any generator.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/truchet32");
    let model = model.to_str().unwrap();
    let out = easel(dir.path(), &["sample", model, "-o", "s.gif", "-n", "4"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("add --interpolate"),
        "{}",
        stderr(&out)
    );
    let out = easel(
        dir.path(),
        &["sample", model, "-o", "s.png", "-n", "4", "--interpolate"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("name the output .gif"),
        "{}",
        stderr(&out)
    );
    let out = easel(dir.path(), &["sample", model, "-o", "s.jpg", "-n", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(dir.path().join("s.jpg")).unwrap();
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Jpeg
    );
}

#[test]
fn an_empty_dataset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.rhai"), TRUCHET).unwrap();
    let out = easel(dir.path(), &["dataset", "t.rhai", "-n", "0", "-o", "d"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects it");
    assert!(
        stderr(&out).contains("0 images: give 1 to 10000000"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("d").exists());
}

#[test]
fn a_can_generator_has_no_class_to_sample() {
    use easel::gan::train::{self, Silent, TrainOptions};
    let dir = tempfile::tempdir().unwrap();
    for (class, level) in [("a", 0u8), ("b", 255)] {
        let d = dir.path().join("data").join(class);
        std::fs::create_dir_all(&d).unwrap();
        image::GrayImage::from_pixel(8, 8, image::Luma([level]))
            .save(d.join("0.png"))
            .unwrap();
    }
    let src = r#"#{ kind: "gan", model: "can", image_size: 28, latent: 4, g_widths: [8, 8],
        d_widths: [8], batch: 2, steps: 1, data: #{ folder: "data" } }"#;
    let path = dir.path().join("can.rhai");
    std::fs::write(&path, src).unwrap();
    let easel::spec::Spec::Gan(spec) = easel::spec::load(&path).unwrap().spec else {
        panic!("a GAN sketch")
    };
    let run = easel::run::RunDir::at(&dir.path().join("run")).unwrap();
    train::train(&run, src, &spec, &TrainOptions::default(), &mut Silent).unwrap();
    let out = easel(
        dir.path(),
        &["sample", "run", "-o", "a.png", "--class", "a"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a CAN, whose generator is unconditional"),
        "{}",
        stderr(&out)
    );
    let out = easel(dir.path(), &["sample", "run", "-o", "all.png", "-n", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn two_threads_writing_one_file_never_tear_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same.bin");
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let path = &path;
            s.spawn(move || {
                for _ in 0..25 {
                    easel::recipe::write_atomically(path, |f| {
                        std::io::Write::write_all(f, &vec![t; 64 * 1024])?;
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 64 * 1024);
    assert!(
        bytes.iter().all(|&b| b == bytes[0]),
        "one writer's bytes only"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary files left behind");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & 0o044,
        0o044,
        "readable by others, as any file: {mode:o}"
    );
}

#[test]
fn two_favourites_in_one_second_get_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::new(4, 4));
    let fav = easel::studio::app::Favourite::Picture {
        name: "grid".into(),
        image: std::sync::Arc::new(img),
        upscale: None,
    };
    let paths: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| easel::studio::save_favourite(dir.path(), &fav).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = paths.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{paths:?}");
    for p in &paths {
        assert!(image::open(p).is_ok(), "{} is a whole image", p.display());
    }
}

#[test]
fn a_fit_trains_on_the_device_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 30) as u8, 90])
    })
    .save(dir.path().join("t.png"))
    .unwrap();
    std::fs::write(
        dir.path().join("f.rhai"),
        r#"#{ kind: "cppn", size: 16, layers: [4], fit: #{ image: "t.png", steps: 3, size: 8 } }"#,
    )
    .unwrap();
    let out = easel(
        dir.path(),
        &["render", "f.rhai", "-o", "a.png", "--device", "auto"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    if !easel::device::cuda_built() {
        let out = easel(
            dir.path(),
            &["render", "f.rhai", "-o", "c.png", "--device", "cuda"],
        );
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("built without CUDA"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn rendering_a_gan_sketch_names_the_file_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.rhai"),
        r#"#{ kind: "gan", data: #{ folder: "data" } }"#,
    )
    .unwrap();
    let out = easel(dir.path(), &["render", "g.rhai", "-o", "g.png"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("error: g.rhai: a GAN sketch is trained, not rendered"),
        "{}",
        stderr(&out)
    );
}
