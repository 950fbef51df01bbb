use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::device::DeviceArg;
use crate::recipe;
use crate::upscale::{Precision, Tiling, Upscaler, SHIPPED};

#[derive(Args, Debug)]
#[command(after_help = after_help())]
pub struct UpscaleArgs {
    /// Pictures to upscale (PNG, JPEG, GIF, BMP, WebP).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output file (one input), or a folder (several inputs: each keeps its name, as .png).
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// A shipped model's name, an ncnn .param (its .bin beside it), a PyTorch .pth or a
    /// .safetensors of RRDBNet (ESRGAN, Real-ESRGAN) or SRVGGNetCompact. The scale comes
    /// from the model.
    #[arg(
        short,
        long,
        value_name = "MODEL",
        default_value = crate::spec::Upscaling::DEFAULT_MODEL
    )]
    pub model: String,
    /// Tile side in input pixels (0: the whole picture at once); smaller tiles use less
    /// memory, the picture is the same.
    #[arg(long, default_value_t = Tiling::default().tile, value_name = "N")]
    pub tile: u32,
    /// Pixels of context around each tile (mirrored at the picture's edges).
    #[arg(long, default_value_t = Tiling::default().pad, value_name = "N")]
    pub tile_pad: u32,
    /// cpu, cuda, cuda:N or auto (see `easel train --help`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: DeviceArg,
    /// The convolutions' arithmetic: fp32, or bf16 inputs and weights with f32 sums
    /// (CUDA: Candle's bf16 ops; a CPU with AVX512_BF16: a direct bf16 kernel, slower than
    /// fp32's Winograd convolutions on AVX-512 CPUs; other CPUs run fp32). Pixels within a
    /// few levels of fp32's; the recipe records which ran.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

fn after_help() -> String {
    let mut s = String::from("Shipped models (models/esrgan, BSD-3-Clause, from Real-ESRGAN):\n");
    for (name, what) in SHIPPED {
        s.push_str(&format!("  {name:<26} {what}\n"));
    }
    s.push_str(
        "\nEach output PNG carries a recipe naming the model and the input it was made from.",
    );
    s
}

pub(crate) fn run(args: UpscaleArgs) -> Result<()> {
    let device = args.device.open()?;
    let up = Upscaler::load_with(&args.model, &device, args.precision)?;
    if args.precision == Precision::Bf16 && up.precision != Precision::Bf16 {
        eprintln!(
            "bf16: no bf16 convolutions here (they need AVX512_BF16, and EASEL_CONV_KERNEL=gemm \
             or EASEL_KERNELS=portable turn them off); running fp32"
        );
    }
    if up.precision == Precision::Bf16 && device.is_cpu() && crate::upscale::fp32_winograd() {
        eprintln!(
            "bf16: on this CPU fp32 is faster (its 3x3 convolutions run as Winograd F(4x4, 3x3), \
             whose rounding bf16 would amplify); running bf16 as asked"
        );
    }
    eprintln!(
        "{} ({}) from {}",
        args.model,
        up.summary(),
        up.file.display()
    );
    let tiling = Tiling {
        tile: args.tile,
        pad: args.tile_pad,
    };
    let upscaling = crate::spec::Upscaling {
        model: args.model.clone(),
        tile: args.tile,
        tile_pad: args.tile_pad,
    };
    let many = args.inputs.len() > 1;
    if many {
        if args.output.exists() && !args.output.is_dir() {
            bail!(
                "{} is a file; several inputs need a folder for -o",
                args.output.display()
            );
        }
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?;
    }
    // Check every input's size and output first (reading headers only), so a bad file
    // fails before hours of work and two inputs never write one output.
    let mut jobs = vec![];
    let mut outputs = std::collections::HashSet::new();
    for input in &args.inputs {
        let (w, h) = image::ImageReader::open(input)
            .with_context(|| format!("cannot open {}", input.display()))?
            .with_guessed_format()
            .with_context(|| format!("cannot read {}", input.display()))?
            .into_dimensions()
            .with_context(|| format!("{} is not a picture easel can read", input.display()))?;
        up.check_size(w, h)
            .with_context(|| input.display().to_string())?;
        let out = if many {
            let stem = input.file_stem().context("an input without a file name")?;
            args.output.join(Path::new(stem).with_extension("png"))
        } else {
            args.output.clone()
        };
        recipe::StillFormat::of(&out)?;
        if !outputs.insert(out.clone()) {
            bail!(
                "{} and another input would both write {}: rename one",
                input.display(),
                out.display()
            );
        }
        jobs.push((input, (w, h), out));
    }
    let total: usize = jobs
        .iter()
        .map(|(_, (w, h), _)| up.tiles(*w, *h, tiling))
        .sum();
    let bar = super::progress_bar(total as u64, "upscaling", "tiles");
    let mut before = 0;
    for (input, (w, h), out) in jobs {
        bar.set_message(input.display().to_string());
        let img = read_picture(input)?;
        let big = up.upscale(&img, tiling, &mut |done, _| {
            bar.set_position((before + done) as u64)
        })?;
        before += up.tiles(w, h, tiling);
        let tags = [upscaling.tag_by(&up, &input.display().to_string())];
        recipe::write_image_tagged(&out, &big, None, &tags)?;
        bar.suspend(|| {
            eprintln!(
                "wrote {} ({}x{} from {w}x{h})",
                out.display(),
                big.width(),
                big.height(),
            )
        });
    }
    bar.finish_and_clear();
    Ok(())
}

/// Reads a picture, naming the file in every error.
pub(crate) fn read_picture(path: &Path) -> Result<image::DynamicImage> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    reader
        .decode()
        .with_context(|| format!("{} is not a picture easel can read", path.display()))
}
