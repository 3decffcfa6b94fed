// ATen operations that tch 0.24 does not bind, behind a small C ABI (Rust side: src/native.rs).
//
// Tensors cross the boundary as `at::Tensor*`, which is what tch's `C_tensor` pointer is. Every
// function returns a C++ exception as a malloc'd message (NULL on success; see shim.h).

#include <ATen/ATen.h>
#include <ATen/Version.h>
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
char* sw_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads, at::Tensor* const* exp_avgs,
                     at::Tensor* const* exp_avg_sqs, at::Tensor* const* steps, size_t n, double lr, double beta1,
                     double beta2, double weight_decay, double eps, const at::Tensor* found_inf) {
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
        at::_fused_adamw_(tensor_list(params, n), tensor_list(grads, n), tensor_list(exp_avgs, n),
                          tensor_list(exp_avg_sqs, n), {}, step_list, lr, beta1, beta2, weight_decay, eps,
                          /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, inf);
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

// CUDA autocast computes in bf16 (tch's `autocast` would use fp16).
char* sw_use_bf16_autocast_on_cuda() {
    return guarded([] { at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16); });
}

// TF32 for fp32 matmuls and convolutions on CUDA (`torch.backends.cuda.matmul.allow_tf32`).
char* sw_allow_tf32(bool allow) {
    return guarded([&] {
        at::globalContext().setAllowTF32CuBLAS(allow);
        at::globalContext().setAllowTF32CuDNN(allow);
    });
}

// ATen's CPU capability (`torch.backends.cpu.get_cpu_capability()`: "AVX2", "AVX512", ...), as a
// malloc'd string the caller frees with sw_free_error.
char* sw_cpu_capability(char** out) {
    return guarded([&] { *out = stagewise::error_message(at::get_cpu_capability().c_str()); });
}

}  // extern "C"
