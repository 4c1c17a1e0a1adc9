//! `pretext devices`: what this build can run on, and what this machine offers.

use std::time::Instant;

use anyhow::Context;
use burn::tensor::{Device, Distribution, Tensor};

use crate::cli::DeviceArgs;
#[cfg(feature = "wgpu")]
use crate::device::quietly;
use crate::device::{Backend, resolve};

pub fn run(args: DeviceArgs) -> anyhow::Result<()> {
    println!("backends (cargo features):");
    for backend in Backend::ALL {
        let state = if backend.compiled() {
            "compiled in"
        } else {
            "not compiled"
        };
        println!(
            "  {:<8} {:<13} {}",
            backend.name(),
            state,
            backend.describe()
        );
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpu: {threads} hardware threads");
    list_gpu_adapters();
    if args.device.is_some() {
        let (spec, device) = resolve(&args)?;
        let ms = smoke_test(&device).with_context(|| format!("device {spec} failed its check"))?;
        println!("{spec}: ok, a 256x256 matmul round trip took {ms:.1} ms");
    }
    Ok(())
}

/// Runs one small matmul and reads it back, proving the device can execute kernels.
fn smoke_test(device: &Device) -> anyhow::Result<f64> {
    let start = Instant::now();
    let a = Tensor::<2>::random([256, 256], Distribution::Uniform(-1.0, 1.0), device);
    let b = Tensor::<2>::random([256, 256], Distribution::Uniform(-1.0, 1.0), device);
    let sum: f32 = a.matmul(b).sum().into_scalar();
    anyhow::ensure!(sum.is_finite(), "the result is not finite ({sum})");
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

#[cfg(feature = "wgpu")]
fn list_gpu_adapters() {
    use burn::tensor::DeviceType;
    // Enumerating opens every adapter; a broken driver must not take the listing down.
    let found = quietly(|| {
        Device::enumerate(DeviceType::Wgpu)
            .into_vec()
            .into_iter()
            .map(|d| {
                let name = d.identity().map(|i| i.name).unwrap_or_default();
                let debug = format!("{d:?}");
                (device_value(&debug).unwrap_or(debug), name)
            })
            .collect::<Vec<_>>()
    });
    match found {
        Some(adapters) if !adapters.is_empty() => {
            println!("wgpu adapters (and the --device value that selects each):");
            for (value, name) in adapters {
                println!("  {value:<22} {name}");
            }
        }
        Some(_) => {
            println!("wgpu adapters: none found (is a Vulkan, Metal or DX12 driver installed?)")
        }
        None => println!("wgpu adapters: the graphics driver failed while listing adapters"),
    }
}

/// The `--device` value that selects an adapter, from the kind in Burn's description of the
/// device (`…WgpuDevice { kind: IntegratedGpu(1), … }…` is `wgpu:integrated:1`).
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
fn device_value(debug: &str) -> Option<String> {
    let kind = debug.split("kind: ").nth(1)?;
    let index = |prefix: &str| -> Option<usize> {
        kind.strip_prefix(prefix)?
            .strip_prefix('(')?
            .split(')')
            .next()?
            .parse()
            .ok()
    };
    if kind.starts_with("Cpu") {
        Some("wgpu:cpu".into())
    } else if kind.starts_with("DefaultDevice") {
        Some("wgpu".into())
    } else if let Some(n) = index("DiscreteGpu") {
        Some(format!("wgpu:{n}"))
    } else if let Some(n) = index("IntegratedGpu") {
        Some(format!("wgpu:integrated:{n}"))
    } else {
        index("VirtualGpu").map(|n| format!("wgpu:virtual:{n}"))
    }
}

#[cfg(not(feature = "wgpu"))]
fn list_gpu_adapters() {
    println!("wgpu adapters: not listed (build with --features wgpu)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_adapter_kind_is_named_by_its_device_value() {
        let d = |kind: &str| {
            format!("Device<Cube(Wgpu(WgpuDevice {{ kind: {kind}, backend: Auto }}))>")
        };
        assert_eq!(device_value(&d("Cpu")).as_deref(), Some("wgpu:cpu"));
        assert_eq!(
            device_value(&d("DiscreteGpu(2)")).as_deref(),
            Some("wgpu:2")
        );
        assert_eq!(
            device_value(&d("IntegratedGpu(0)")).as_deref(),
            Some("wgpu:integrated:0")
        );
        assert_eq!(
            device_value(&d("VirtualGpu(1)")).as_deref(),
            Some("wgpu:virtual:1")
        );
        assert_eq!(device_value(&d("DefaultDevice")).as_deref(), Some("wgpu"));
        assert_eq!(device_value("Flex"), None);
        // Every value parses back as a device.
        for kind in ["Cpu", "DiscreteGpu(2)", "IntegratedGpu(0)", "VirtualGpu(1)"] {
            let value = device_value(&d(kind)).unwrap();
            assert!(
                value.parse::<crate::device::DeviceSpec>().is_ok(),
                "{value}"
            );
        }
    }
}
