//! Where tensors live: `--device cpu | cuda | cuda:N | auto`.
//!
//! CUDA is compiled in only with the `cuda` feature (see `scripts/build_cuda.sh`); without
//! it, asking for CUDA is an error that says how to get it, and `auto` means the CPU.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use candle_core::Device;

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

fn ordinal(device: &Device) -> usize {
    match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceArg;

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
