//! Where tensors live: `--device cpu | cuda | cuda:N | auto`.
//!
//! CUDA is compiled in only with the `cuda` feature (see `scripts/build_cuda.sh`); without
//! it, asking for CUDA is an error that says how to get it, and `auto` means the CPU.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

/// A device as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceArg {
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(usize),
    /// The first CUDA GPU when this build has CUDA and one answers, else the CPU.
    Auto,
}

impl FromStr for DeviceArg {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.trim() {
            "cpu" => Ok(DeviceArg::Cpu),
            "cuda" | "gpu" => Ok(DeviceArg::Cuda(0)),
            "auto" => Ok(DeviceArg::Auto),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(DeviceArg::Cuda(n)),
                _ => Err(format!(
                    "unknown device \"{other}\"; expected cpu, cuda, cuda:N (e.g. cuda:1) or auto"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceArg::Cpu => write!(f, "cpu"),
            DeviceArg::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceArg::Auto => write!(f, "auto"),
        }
    }
}

impl DeviceArg {
    /// Opens the device, or says why it cannot.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda(n) => {
                if !cuda_built() {
                    bail!("--device {self}: this easel was built without CUDA; build it with `scripts/build_cuda.sh` (or `cargo build --release --features cuda` where the CUDA toolkit is installed)");
                }
                Device::new_cuda(n).map_err(|e| {
                    anyhow::anyhow!("--device {self}: no CUDA GPU answered ({e}); is the NVIDIA driver loaded, and is there a GPU {n}?")
                })
            }
            DeviceArg::Auto => Ok(if cuda_built() {
                Device::new_cuda(0).unwrap_or(Device::Cpu)
            } else {
                Device::Cpu
            }),
        }
    }
}

/// Whether this build has CUDA compiled in.
pub fn cuda_built() -> bool {
    cfg!(feature = "cuda")
}

/// A short description for logs and the run panel: "cpu" or "cuda:0".
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => format!("cuda:{}", ordinal(device)),
        other => format!("{:?}", other.location()),
    }
}

/// A GPU as the run panel shows it: its name and the memory in use on it (by every
/// process, as the driver counts it: what decides whether another run still fits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub name: String,
    pub memory_used: u64,
    pub memory_total: u64,
}

impl fmt::Display for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GIB: f64 = (1u64 << 30) as f64;
        write!(
            f,
            "{} · {:.1}/{:.0} GiB",
            self.name,
            self.memory_used as f64 / GIB,
            self.memory_total as f64 / GIB
        )
    }
}

/// The GPU behind `device`, asked of the driver now; `None` on the CPU (or when the
/// driver does not answer: the panel then shows the device alone).
pub fn gpu(device: &Device) -> Option<Gpu> {
    #[cfg(feature = "cuda")]
    if let Ok(cuda) = device.as_cuda_device() {
        let stream = cuda.cuda_stream();
        let context = stream.context();
        let name = context.name().ok()?;
        let (free, total) = context.mem_get_info().ok()?;
        return Some(Gpu {
            name,
            memory_used: (total - free) as u64,
            memory_total: total as u64,
        });
    }
    let _ = device;
    None
}

fn ordinal(device: &Device) -> usize {
    match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::{DeviceArg, Gpu};

    #[test]
    fn devices_parse_as_the_command_line_names_them() {
        assert_eq!("cpu".parse(), Ok(DeviceArg::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceArg::Cuda(0)));
        assert_eq!("cuda:2".parse(), Ok(DeviceArg::Cuda(2)));
        assert_eq!("auto".parse(), Ok(DeviceArg::Auto));
        let err = "cuda:x".parse::<DeviceArg>().unwrap_err();
        assert!(err.contains("expected cpu, cuda, cuda:N"), "{err}");
        assert_eq!(
            DeviceArg::Cuda(1).to_string().parse(),
            Ok(DeviceArg::Cuda(1))
        );
    }

    #[test]
    fn a_gpu_reads_as_its_name_and_memory_in_gib() {
        let gpu = Gpu {
            name: "NVIDIA H200".into(),
            memory_used: 13 << 29,
            memory_total: 140 << 30,
        };
        assert_eq!(gpu.to_string(), "NVIDIA H200 · 6.5/140 GiB");
        assert_eq!(super::gpu(&candle_core::Device::Cpu), None);
    }

    #[test]
    fn without_cuda_compiled_in_auto_is_the_cpu_and_cuda_says_how_to_get_it() {
        if super::cuda_built() {
            return;
        }
        assert!(DeviceArg::Auto.open().unwrap().is_cpu());
        let err = DeviceArg::Cuda(0).open().unwrap_err().to_string();
        assert!(
            err.contains("built without CUDA") && err.contains("build_cuda.sh"),
            "{err}"
        );
    }
}
