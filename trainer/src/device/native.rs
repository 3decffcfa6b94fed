//! ATen operations tch does not bind, through the C++ shim `csrc/native_ops.cpp` (compiled by
//! build.rs against libtorch's headers): PyTorch's fused AdamW kernel, foreach norm and scale (so
//! clipping never reads the norm on the host), `grad = None`, bf16 autocast and TF32.

use std::ffi::{c_char, CStr};

use tch::Tensor;
use torch_sys::C_tensor;

/// A libtorch error raised inside the shim.
#[derive(Debug, thiserror::Error)]
#[error("libtorch {op}: {message}")]
pub struct NativeError {
    pub op: &'static str,
    pub message: String,
}

extern "C" {
    fn sw_free_error(message: *mut c_char);
    #[allow(clippy::too_many_arguments)]
    fn sw_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        steps: *const *mut C_tensor,
        n: usize,
        lr: f64,
        lr_tensor: *const C_tensor,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        found_inf: *const C_tensor,
    ) -> *mut c_char;
    fn sw_global_norm(tensors: *const *mut C_tensor, n: usize, out: *mut *mut C_tensor) -> *mut c_char;
    fn sw_scale_(tensors: *const *mut C_tensor, n: usize, factor: *const C_tensor) -> *mut c_char;
    fn sw_clear_grad(tensor: *mut C_tensor) -> *mut c_char;
    fn sw_backward(tensor: *const C_tensor, gradient: *const C_tensor) -> *mut c_char;
    fn sw_pin_memory(tensor: *const C_tensor, out: *mut *mut C_tensor) -> *mut c_char;
    fn sw_use_bf16_autocast_on_cuda() -> *mut c_char;
    fn sw_allow_tf32(allow: bool) -> *mut c_char;
    fn sw_cpu_capability(out: *mut *mut c_char) -> *mut c_char;
    fn sw_autocast_enter(previous_enabled: *mut bool, previous_cache: *mut bool) -> *mut c_char;
    fn sw_autocast_exit(previous_enabled: bool, previous_cache: bool) -> *mut c_char;
    fn sw_copy_(dst: *mut C_tensor, src: *const C_tensor, non_blocking: bool) -> *mut c_char;
    fn sw_zero_(tensors: *const *mut C_tensor, n: usize) -> *mut c_char;
    fn sw_zero_grad_buffers(tensors: *const *mut C_tensor, n: usize) -> *mut c_char;
    fn sw_set_deterministic(on: bool) -> *mut c_char;
    fn sw_deterministic() -> bool;
    fn sw_sdpa_backend(only: i32) -> *mut c_char;
    fn sw_single_threaded_autograd() -> *mut c_char;
}

/// The first line of a shim's returned message (NULL = success: `None`), freed. Every C entry
/// point of the shims (native ops, c10d) reports errors this way.
pub(crate) fn take_message(message: *mut c_char) -> Option<String> {
    if message.is_null() {
        return None;
    }
    // SAFETY: a non-null return is a NUL-terminated string the shim malloc'd for us to free.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().lines().next().unwrap_or_default().to_string();
    unsafe { sw_free_error(message) };
    Some(text)
}

/// Turn the shim's returned message (NULL = success) into a `Result`, freeing it.
fn check(op: &'static str, message: *mut c_char) -> Result<(), NativeError> {
    match take_message(message) {
        None => Ok(()),
        Some(message) => Err(NativeError { op, message }),
    }
}

/// The raw handles of `tensors`, for a C array argument. The tensors must outlive the call.
fn handles(tensors: &[Tensor]) -> Vec<*mut C_tensor> {
    tensors.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

/// The tensors of one fused AdamW call, index-aligned.
pub struct AdamWTensors<'a> {
    pub params: &'a [Tensor],
    pub grads: &'a [Tensor],
    pub exp_avgs: &'a [Tensor],
    pub exp_avg_sqs: &'a [Tensor],
    /// 0-d float tensors on the parameters' device, advanced by one per applied update.
    pub steps: &'a [Tensor],
}

/// AdamW's hyperparameters for one fused call.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// One in-place AdamW update with PyTorch's fused kernel (`torch.optim.AdamW(fused=True)`). When
/// `skip_if` (a 0-d float tensor on the same device) holds 1, the device skips the update and the
/// step counters stay where they were; the host never reads it. With `lr_tensor` (a 0-d float32
/// tensor on the parameters' device) the learning rate is read there instead of `hp.lr`: what a
/// CUDA graph replays, the rate written into the tensor before each replay.
pub fn fused_adamw(
    t: &AdamWTensors,
    hp: AdamWStep,
    lr_tensor: Option<&Tensor>,
    skip_if: Option<&Tensor>,
) -> Result<(), NativeError> {
    let n = t.params.len();
    assert!(
        [t.grads.len(), t.exp_avgs.len(), t.exp_avg_sqs.len(), t.steps.len()].iter().all(|&len| len == n),
        "fused_adamw: tensor lists of different lengths"
    );
    let (p, g, m, v, s) =
        (handles(t.params), handles(t.grads), handles(t.exp_avgs), handles(t.exp_avg_sqs), handles(t.steps));
    let skip = skip_if.map_or(std::ptr::null(), |t| t.as_ptr());
    let lr_tensor = lr_tensor.map_or(std::ptr::null(), |t| t.as_ptr());
    // SAFETY: five arrays of n live tensor handles (borrowed for the call) and optional handles.
    let message = unsafe {
        sw_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n,
            hp.lr,
            lr_tensor,
            hp.beta1,
            hp.beta2,
            hp.weight_decay,
            hp.eps,
            skip,
        )
    };
    check("_fused_adamw_", message)
}

/// The global L2 norm of `tensors` as a 0-d float tensor (as `clip_grad_norm_` computes it).
pub fn global_norm(tensors: &[Tensor]) -> Result<Tensor, NativeError> {
    let h = handles(tensors);
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: n live handles; on success `out` is a new tensor we own.
    check("_foreach_norm", unsafe { sw_global_norm(h.as_ptr(), h.len(), &mut out) })?;
    // SAFETY: the shim allocated `out` with `new at::Tensor`, which tch's Drop deletes.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Multiply every tensor in place by the 0-d tensor `factor` (no host read).
pub fn scale_(tensors: &[Tensor], factor: &Tensor) -> Result<(), NativeError> {
    let h = handles(tensors);
    // SAFETY: n live handles and a live factor.
    check("_foreach_mul_", unsafe { sw_scale_(h.as_ptr(), h.len(), factor.as_ptr()) })
}

/// `tensor.grad = None`: the gradient's memory goes back to the allocator.
pub fn clear_grad(tensor: &Tensor) -> Result<(), NativeError> {
    // SAFETY: a live tensor handle; only its autograd metadata changes.
    check("clear grad", unsafe { sw_clear_grad(tensor.as_ptr() as *mut C_tensor) })
}

/// `tensor.backward(gradient)`: backpropagate a gradient computed outside autograd.
pub fn backward_with(tensor: &Tensor, gradient: &Tensor) -> Result<(), NativeError> {
    // SAFETY: two live tensor handles.
    check("backward", unsafe { sw_backward(tensor.as_ptr(), gradient.as_ptr()) })
}

/// A page-locked copy of a CPU tensor (needs the CUDA backend loaded).
pub fn pin_memory(tensor: &Tensor) -> Result<Tensor, NativeError> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: a live handle; on success `out` is a new tensor we own.
    check("pin_memory", unsafe { sw_pin_memory(tensor.as_ptr(), &mut out) })?;
    // SAFETY: allocated by the shim with `new at::Tensor`, deleted by tch's Drop.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Make CUDA autocast compute in bf16 instead of tch's default fp16.
pub fn use_bf16_autocast_on_cuda() -> Result<(), NativeError> {
    // SAFETY: sets a global in libtorch.
    check("set_autocast_dtype", unsafe { sw_use_bf16_autocast_on_cuda() })
}

/// Allow TF32 for fp32 matmuls and convolutions on CUDA (no effect on CPU).
pub fn allow_tf32(allow: bool) -> Result<(), NativeError> {
    // SAFETY: sets a global in libtorch.
    check("allow_tf32", unsafe { sw_allow_tf32(allow) })
}

/// `f` under CUDA bf16 autocast when `enabled` (see [`use_bf16_autocast_on_cuda`]), through ATen's
/// non-deprecated autocast API (`tch::autocast` prints a deprecation warning on every call: 16,664
/// lines in one GPU bench), with the cache of casted weights off (required inside a CUDA graph).
/// Without `enabled`, or on a machine without CUDA, `f` runs as it is.
pub fn autocast<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled {
        return f();
    }
    let (mut previous_enabled, mut previous_cache) = (false, true);
    // SAFETY: two out-pointers to live bools; the state is ATen's thread-local autocast state.
    if let Some(e) = take_message(unsafe { sw_autocast_enter(&mut previous_enabled, &mut previous_cache) }) {
        panic!("entering autocast: {e}");
    }
    // Restored even if `f` panics, so a failed CUDA-graph capture leaves autocast as it found it.
    struct Exit(bool, bool);
    impl Drop for Exit {
        fn drop(&mut self) {
            // SAFETY: restores the values sw_autocast_enter returned.
            let _ = take_message(unsafe { sw_autocast_exit(self.0, self.1) });
        }
    }
    let _exit = Exit(previous_enabled, previous_cache);
    f()
}

/// `dst.copy_(src)` without the host waiting when `non_blocking` (a device tensor into pinned host
/// memory: the copy is queued on the current stream; wait for it with an event).
pub fn copy_(dst: &Tensor, src: &Tensor, non_blocking: bool) -> Result<(), NativeError> {
    // SAFETY: two live handles; only `dst`'s values change.
    check("copy_", unsafe { sw_copy_(dst.as_ptr() as *mut C_tensor, src.as_ptr(), non_blocking) })
}

/// Zero every tensor in place with one foreach kernel.
pub fn zero_(tensors: &[Tensor]) -> Result<(), NativeError> {
    let h = handles(tensors);
    // SAFETY: n live handles.
    check("_foreach_zero_", unsafe { sw_zero_(h.as_ptr(), h.len()) })
}

/// A zeroed gradient buffer for every tensor (allocated where there is none), so that backward
/// accumulates into memory that stays put.
pub fn zero_grad_buffers(tensors: &[Tensor]) -> Result<(), NativeError> {
    let h = handles(tensors);
    // SAFETY: n live handles; only their gradients change.
    check("zero grad buffers", unsafe { sw_zero_grad_buffers(h.as_ptr(), h.len()) })
}

/// Deterministic algorithms on (or off): `torch.use_deterministic_algorithms`, deterministic cuDNN,
/// no cuDNN benchmarking. An op with no deterministic implementation then fails, naming itself.
pub fn set_deterministic(on: bool) -> Result<(), NativeError> {
    // SAFETY: sets globals in libtorch.
    check("use_deterministic_algorithms", unsafe { sw_set_deterministic(on) })
}

/// The attention kernels `scaled_dot_product_attention` may use on CUDA: one, or (`Auto`) every one.
pub fn sdpa_backend(backend: run_dir::config::SdpaBackend) -> Result<(), NativeError> {
    use run_dir::config::SdpaBackend;
    let only = match backend {
        SdpaBackend::Auto => -1,
        SdpaBackend::Flash => 0,
        SdpaBackend::Efficient => 1,
        SdpaBackend::Cudnn => 2,
        SdpaBackend::Math => 3,
    };
    // SAFETY: sets globals in libtorch.
    check("sdpa backend", unsafe { sw_sdpa_backend(only) })
}

/// Backward passes on the calling thread (this thread's autograd state): no autograd device
/// threads, whose first cuBLAS call on a GPU finds no CUDA context, and all of a step's work on
/// the thread that captures it as a CUDA graph.
pub fn single_threaded_autograd() -> Result<(), NativeError> {
    // SAFETY: sets this thread's autograd state.
    check("set_multithreading_enabled", unsafe { sw_single_threaded_autograd() })
}

/// Whether deterministic algorithms are on.
pub fn deterministic() -> bool {
    // SAFETY: reads a global of libtorch.
    unsafe { sw_deterministic() }
}

/// ATen's CPU capability, as `torch.backends.cpu.get_cpu_capability()` names it (`AVX2`, `AVX512`, ...).
pub fn cpu_capability() -> Result<String, NativeError> {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: on success `out` is a malloc'd NUL-terminated string, freed by take_message.
    check("get_cpu_capability", unsafe { sw_cpu_capability(&mut out) })?;
    Ok(take_message(out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use tch::Kind;

    #[test]
    fn global_norm_and_scale_match_plain_arithmetic() {
        let a = Tensor::from_slice(&[3.0f32, 4.0]);
        let b = Tensor::from_slice(&[12.0f32]);
        let norm = global_norm(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
        assert_relative_eq!(norm.double_value(&[]), 13.0, epsilon = 1e-6);
        scale_(&[a.shallow_clone(), b.shallow_clone()], &Tensor::from(0.5f32)).unwrap();
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![1.5, 2.0]);
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), vec![6.0]);
    }

    #[test]
    fn clearing_a_gradient_frees_it() {
        let w = Tensor::ones([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        (&w * 2.0).sum(Kind::Float).backward();
        assert!(w.grad().defined());
        clear_grad(&w).unwrap();
        assert!(!w.grad().defined());
    }

    #[test]
    fn pinning_needs_cuda_and_is_an_error_without_it() {
        let pinned = pin_memory(&Tensor::from_slice(&[1i16, 2]));
        match tch::Cuda::is_available() {
            // With CUDA: a page-locked copy of the same values.
            true => assert_eq!(Vec::<i16>::try_from(&pinned.unwrap()).unwrap(), vec![1, 2]),
            // Without: an error naming the op, not a crash.
            false => assert_eq!(pinned.unwrap_err().op, "pin_memory"),
        }
    }

    #[test]
    fn the_device_learning_rate_updates_like_the_host_one() {
        let run = |lr_tensor: bool| {
            let p = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.5]).view([2, 2]);
            let g = Tensor::from_slice(&[0.5f32, 0.25, -1.0, 2.0]).view([2, 2]);
            let (m, v, step) = (p.zeros_like(), p.zeros_like(), Tensor::zeros([], (Kind::Float, tch::Device::Cpu)));
            let t = AdamWTensors {
                params: std::slice::from_ref(&p),
                grads: std::slice::from_ref(&g),
                exp_avgs: std::slice::from_ref(&m),
                exp_avg_sqs: std::slice::from_ref(&v),
                steps: std::slice::from_ref(&step),
            };
            let hp = AdamWStep { lr: 0.1, beta1: 0.9, beta2: 0.95, weight_decay: 0.1, eps: 1e-8 };
            let lr = Tensor::from(0.1f32);
            fused_adamw(&t, hp, lr_tensor.then_some(&lr), None).unwrap();
            Vec::<f32>::try_from(p.flatten(0, -1)).unwrap()
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn gradient_buffers_are_made_and_zeroed() {
        let w = Tensor::ones([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        zero_grad_buffers(std::slice::from_ref(&w)).unwrap();
        assert_eq!(Vec::<f32>::try_from(&w.grad()).unwrap(), vec![0.0; 3]);
        (&w * 2.0).sum(Kind::Float).backward();
        let before = w.grad().data_ptr();
        zero_grad_buffers(std::slice::from_ref(&w)).unwrap();
        (&w * 3.0).sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(&w.grad()).unwrap(), vec![3.0; 3], "accumulated into the zeroed buffer");
        assert_eq!(w.grad().data_ptr(), before, "the same memory");
    }

    #[test]
    fn copies_and_zeroes_in_place() {
        let a = Tensor::from_slice(&[1.0f64, 2.0]);
        let b = Tensor::zeros([2], (Kind::Double, tch::Device::Cpu));
        copy_(&b, &a, true).unwrap();
        assert_eq!(Vec::<f64>::try_from(&b).unwrap(), vec![1.0, 2.0]);
        zero_(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
        assert_eq!(Vec::<f64>::try_from(&a).unwrap(), vec![0.0, 0.0]);
        // Without CUDA, autocast is a plain call.
        assert_eq!(autocast(false, || 7), 7);
    }

    #[test]
    fn aten_names_its_cpu_capability() {
        let capability = cpu_capability().unwrap();
        assert!(
            ["DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256"].iter().any(|c| capability.starts_with(c)),
            "{capability}"
        );
    }

    #[test]
    fn shim_errors_become_results_not_crashes() {
        // Lists of different dtypes cannot be multiplied by a float factor in place.
        let ints = Tensor::from_slice(&[1i64, 2]);
        let err = scale_(&[ints], &Tensor::from(0.5f32)).unwrap_err();
        assert_eq!(err.op, "_foreach_mul_");
        assert!(!err.message.is_empty());
    }
}
