//! Which device tensors live on, and how CUDA is switched on.
//!
//! Our libtorch build links only `libtorch_cpu.so`, so one binary serves CPU and GPU machines:
//! CUDA appears when the process `dlopen`s `libtorch_cuda.so` before any other torch call
//! (LIBTORCH.md). [`select`] does that first thing for `auto` and `cuda`.
//!
//! The bottom layer of the trainer, what every other folder computes with:
//! - [`numerics`]: the CPU threads and oneMKL's branch, pinned before libtorch loads;
//! - [`native`]: ATen calls tch has no binding for (`csrc/native_ops.cpp`);
//! - [`plugin`]: loading a CUDA-only shared library's function table at run time;
//! - [`cuda`]: the CUDA-graph plugin (capture, replay, pinned reads).

pub mod cuda;
pub mod native;
pub mod numerics;
pub mod plugin;

use anyhow::bail;
use run_dir::Kernels;
use serde::{Deserialize, Serialize};
use tch::Device;

/// The CPU kernels and threads this process computes with (recorded in `run.json`), as
/// [`crate::device::numerics`] pinned them.
pub fn kernels() -> Kernels {
    Kernels {
        cpu_capability: crate::device::native::cpu_capability().unwrap_or_else(|e| format!("unknown ({e})")),
        threads: tch::get_num_threads().max(1) as usize,
        mkl_cbwr: std::env::var("MKL_CBWR").unwrap_or_else(|_| "unset".into()),
    }
}

/// Device names a user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Try to load libtorch's CUDA backend; true on success. Must run before any other torch call.
fn load_cuda_backend() -> bool {
    // SAFETY: dlopen with a valid C string; the handle is deliberately never closed.
    let handle = unsafe { libc::dlopen(c"libtorch_cuda.so".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    !handle.is_null()
}

/// Resolve the user's choice, loading CUDA when asked. `auto` falls back to CPU with a note on
/// stderr; `cuda` without a GPU is an error.
pub fn select(choice: DeviceChoice) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            if !load_cuda_backend() {
                bail!("--device cuda: libtorch_cuda.so cannot be loaded; set LD_LIBRARY_PATH to a CUDA build of torch 2.11.0's lib directory, or use --device cpu");
            }
            if !tch::Cuda::is_available() {
                bail!("--device cuda: libtorch_cuda.so loaded but no GPU is visible; use --device cpu");
            }
            Ok(Device::Cuda(0))
        }
        DeviceChoice::Auto => {
            if load_cuda_backend() && tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Ok(Device::Cpu)
            }
        }
    }
}

/// A short name for logs and run.json: `cpu` or `cuda:0`.
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    }
}

/// Bytes of GPU memory in use on the current device (`cudaMemGetInfo`: total − free), or `None`
/// when the CUDA runtime is not loaded. It includes memory libtorch's caching allocator holds, so
/// after a few training steps it is an upper bound of the steps' peak allocation.
pub fn cuda_memory_in_use() -> Option<u64> {
    type MemGetInfo = unsafe extern "C" fn(free: *mut usize, total: *mut usize) -> i32;
    // SAFETY: looks up a symbol of the already-loaded CUDA runtime (libtorch_cuda.so depends on it
    // and was loaded RTLD_GLOBAL); NULL when it is not there.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"cudaMemGetInfo".as_ptr()) };
    if symbol.is_null() {
        return None;
    }
    // SAFETY: cudaMemGetInfo has exactly this C signature.
    let mem_get_info: MemGetInfo = unsafe { std::mem::transmute(symbol) };
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: two valid out-pointers; a non-zero return is a CUDA error and leaves them unused.
    let status = unsafe { mem_get_info(&mut free, &mut total) };
    (status == 0).then(|| (total - free) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn libtorch_multiplies_matrices_on_cpu() {
        let device = select(DeviceChoice::Cpu).unwrap();
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]).to_device(device);
        let b = Tensor::from_slice(&[5.0f32, 6.0, 7.0, 8.0]).reshape([2, 2]).to_device(device);
        let c = a.matmul(&b);
        let got: Vec<f32> = Vec::try_from(c.flatten(0, -1)).unwrap();
        assert_eq!(got, vec![19.0, 22.0, 43.0, 50.0]);
        assert_eq!(c.kind(), Kind::Float);
    }

    #[test]
    fn gpu_memory_is_read_from_the_cuda_runtime_only_where_a_gpu_answers() {
        // The runtime's cudaMemGetInfo may be loaded without a GPU (libtorch ships libcudart):
        // without a driver it fails, and the answer must be None, never a made-up 0.
        let driver = std::path::Path::new("/dev/nvidiactl").exists();
        match (tch::Cuda::is_available(), driver) {
            (true, _) => assert!(cuda_memory_in_use().is_some_and(|bytes| bytes > 0)),
            (false, false) => assert_eq!(cuda_memory_in_use(), None),
            (false, true) => {} // a driver that libtorch does not use: either answer is honest
        }
    }
}
