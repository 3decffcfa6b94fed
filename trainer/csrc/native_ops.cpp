// ATen operations that tch 0.24 does not bind, behind a small C ABI (Rust side: src/native.rs).
//
// Tensors cross the boundary as `at::Tensor*`, which is what tch's `C_tensor` pointer is. Every
// function returns a C++ exception as a malloc'd message (NULL on success; see shim.h).

#include <ATen/ATen.h>
#include <ATen/Version.h>
#include <c10/core/AutogradState.h>
#include <ATen/autocast_mode.h>

#include <vector>

#include "shim.h"

using stagewise::guarded;

namespace {

std::vector<at::Tensor> tensor_list(at::Tensor* const* tensors, size_t n) {
    std::vector<at::Tensor> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        out.push_back(*tensors[i]);
    }
    return out;
}

}  // namespace

extern "C" {

void sw_free_error(char* message) { std::free(message); }

// One AdamW step over n tensors with PyTorch's fused kernel (`torch.optim.AdamW(fused=True)`):
// advance each step counter, update in place, and, when `found_inf` (a 0-d float tensor, may be
// NULL) is 1, skip the update on the device and take the step counters back, as PyTorch does.
// With `lr_tensor` (a 0-d float32 tensor on the parameters' device, may be NULL) the learning rate
// is read on the device instead of being passed as `lr`: what a CUDA graph replays every step.
char* sw_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads, at::Tensor* const* exp_avgs,
                     at::Tensor* const* exp_avg_sqs, at::Tensor* const* steps, size_t n, double lr,
                     const at::Tensor* lr_tensor, double beta1, double beta2, double weight_decay, double eps,
                     const at::Tensor* found_inf) {
    return guarded([&] {
        if (n == 0) {
            return;
        }
        auto step_list = tensor_list(steps, n);
        at::_foreach_add_(step_list, 1);
        std::optional<at::Tensor> inf;
        if (found_inf != nullptr) {
            inf = *found_inf;
        }
        if (lr_tensor != nullptr) {
            at::_fused_adamw_(tensor_list(params, n), tensor_list(grads, n), tensor_list(exp_avgs, n),
                              tensor_list(exp_avg_sqs, n), {}, step_list, *lr_tensor, beta1, beta2, weight_decay, eps,
                              /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, inf);
        } else {
            at::_fused_adamw_(tensor_list(params, n), tensor_list(grads, n), tensor_list(exp_avgs, n),
                              tensor_list(exp_avg_sqs, n), {}, step_list, lr, beta1, beta2, weight_decay, eps,
                              /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, inf);
        }
        if (inf.has_value()) {
            at::_foreach_add_(step_list, *inf, -1);
        }
    });
}

// The global L2 norm of n tensors as a new 0-d float tensor, computed like
// `torch.nn.utils.clip_grad_norm_` (per-tensor norms with one foreach kernel, then their norm).
char* sw_global_norm(at::Tensor* const* tensors, size_t n, at::Tensor** out) {
    return guarded([&] {
        auto norms = at::_foreach_norm(tensor_list(tensors, n), 2, at::kFloat);
        *out = new at::Tensor(at::linalg_vector_norm(at::stack(norms), 2));
    });
}

// Multiply n tensors in place by the 0-d tensor `factor`, without reading it on the host.
char* sw_scale_(at::Tensor* const* tensors, size_t n, const at::Tensor* factor) {
    return guarded([&] {
        if (n > 0) {
            at::_foreach_mul_(tensor_list(tensors, n), *factor);
        }
    });
}

// `tensor.backward(gradient)`: backpropagate a gradient the caller computed for `tensor`.
char* sw_backward(const at::Tensor* tensor, const at::Tensor* gradient) {
    return guarded([&] { tensor->backward(*gradient); });
}

// A copy of a CPU tensor in page-locked memory (`tensor.pin_memory()`, without the deprecated
// device argument tch would pass), so that a copy to the GPU can run without blocking the host.
char* sw_pin_memory(const at::Tensor* tensor, at::Tensor** out) {
    return guarded([&] { *out = new at::Tensor(tensor->pin_memory()); });
}

// `tensor.grad = None`: free the gradient instead of zeroing it (`zero_grad(set_to_none=True)`).
char* sw_clear_grad(at::Tensor* tensor) {
    return guarded([&] { tensor->mutable_grad().reset(); });
}

// CUDA autocast computes in bf16 (its default would be fp16).
char* sw_use_bf16_autocast_on_cuda() {
    return guarded([] { at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16); });
}

// Enter a CUDA autocast region, as `torch.autocast("cuda")` does, through the non-deprecated API
// (tch's `autocast` calls `at::autocast::is_enabled()`/`set_enabled()`, which print a deprecation
// warning on every call). The cache of casted weights is off: a CUDA graph must not keep casts
// alive across replays (make_graphed_callables refuses it), and every weight is cast once a
// forward pass anyway. `previous` receives what `sw_autocast_exit` restores.
char* sw_autocast_enter(bool* previous_enabled, bool* previous_cache) {
    return guarded([&] {
        *previous_enabled = at::autocast::is_autocast_enabled(at::kCUDA);
        *previous_cache = at::autocast::is_autocast_cache_enabled();
        at::autocast::set_autocast_enabled(at::kCUDA, true);
        at::autocast::set_autocast_cache_enabled(false);
        at::autocast::increment_nesting();
    });
}

char* sw_autocast_exit(bool previous_enabled, bool previous_cache) {
    return guarded([&] {
        if (at::autocast::decrement_nesting() == 0) {
            at::autocast::clear_cache();
        }
        at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled);
        at::autocast::set_autocast_cache_enabled(previous_cache);
    });
}

// `dst.copy_(src, non_blocking)`: with a pinned host `dst`, a device-to-host copy the host does not
// wait for (tch's copy_ always blocks).
char* sw_copy_(at::Tensor* dst, const at::Tensor* src, bool non_blocking) {
    return guarded([&] { dst->copy_(*src, non_blocking); });
}

// Give every tensor a zeroed gradient buffer (allocated when it has none): a CUDA graph's backward
// then accumulates into buffers that outlive it, at fixed addresses.
char* sw_zero_grad_buffers(at::Tensor* const* tensors, size_t n) {
    return guarded([&] {
        for (size_t i = 0; i < n; ++i) {
            auto& grad = tensors[i]->mutable_grad();
            if (grad.defined()) {
                grad.zero_();
            } else {
                grad = at::zeros_like(*tensors[i]);
            }
        }
    });
}

// Zero n tensors in place with one foreach kernel (the gradient buffers a CUDA graph reuses).
char* sw_zero_(at::Tensor* const* tensors, size_t n) {
    return guarded([&] {
        if (n > 0) {
            at::_foreach_zero_(tensor_list(tensors, n));
        }
    });
}

// Deterministic algorithms (`torch.use_deterministic_algorithms(True)`), deterministic cuDNN and
// no cuDNN benchmarking: the same inputs give the same bits on a GPU, run after run. An op without
// a deterministic implementation raises instead of computing.
char* sw_set_deterministic(bool on) {
    return guarded([&] {
        at::globalContext().setDeterministicAlgorithms(on, /*warn_only=*/false);
        at::globalContext().setDeterministicCuDNN(on);
        at::globalContext().setBenchmarkCuDNN(false);
    });
}

// TF32 for fp32 matmuls and convolutions on CUDA (`torch.backends.cuda.matmul.allow_tf32`).
char* sw_allow_tf32(bool allow) {
    return guarded([&] {
        at::globalContext().setAllowTF32CuBLAS(allow);
        at::globalContext().setAllowTF32CuDNN(allow);
    });
}

// Allow one scaled-dot-product-attention kernel on CUDA (0 flash, 1 memory-efficient, 2 cuDNN,
// 3 math), or every one PyTorch may choose (-1).
char* sw_sdpa_backend(int only) {
    return guarded([&] {
        auto& ctx = at::globalContext();
        ctx.setSDPUseFlash(only < 0 || only == 0);
        ctx.setSDPUseMemEfficient(only < 0 || only == 1);
        ctx.setSDPUseCuDNN(only < 0 || only == 2);
        ctx.setSDPUseMath(only < 0 || only == 3);
    });
}

// Run backward passes on the calling thread (`torch.autograd.set_multithreading_enabled(False)`):
// PyTorch's device threads for CUDA have no CUDA context bound when their first cuBLAS call comes
// ("Attempting to run cuBLAS, but there was no current CUDA context!"), and a CUDA graph captures
// only the work of its own thread. CPU backward runs on the calling thread anyway.
char* sw_single_threaded_autograd() {
    return guarded([] { c10::AutogradState::get_tls_state().set_multithreading_enabled(false); });
}

// Whether deterministic algorithms are on (what `sw_set_deterministic` set).
bool sw_deterministic() { return at::globalContext().deterministicAlgorithms(); }

// ATen's CPU capability (`torch.backends.cpu.get_cpu_capability()`: "AVX2", "AVX512", ...), as a
// malloc'd string the caller frees with sw_free_error.
char* sw_cpu_capability(char** out) {
    return guarded([&] { *out = stagewise::error_message(at::get_cpu_capability().c_str()); });
}

}  // extern "C"
