// The NCCL process group for CUDA tensors, as a plugin: ProcessGroupNCCL lives in libtorch_cuda.so,
// which the trainer loads only on GPU machines, and its header needs the CUDA runtime and NCCL
// headers of the versions torch 2.11.0 was built with. `just gpu-build` compiles this file into
// `.gpu/libstagewise_nccl.so` with the headers of the matching nvidia wheels
// (nvidia-nccl-cu13 2.28.9, nvidia-cuda-runtime 13.0.96, nvidia-cuda-crt 13.0.88,
// nvidia-cuda-cccl 13.0.85); its c10d symbols resolve, when the trainer dlopens it, from the
// libtorch_cuda.so the trainer has already loaded (RTLD_GLOBAL). Its interface: nccl_api.h.

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <cstdlib>
#include <string>

#include "dist.h"
#include "nccl_api.h"
#include "shim.h"

namespace {

void free_message(char* message) { std::free(message); }

// A NCCL process group over `store` (a store from `sw_dist_store` of the main binary).
char* group(SwStore* store, int rank, int world, int64_t timeout_ms, SwGroup** out) {
    return stagewise::guarded([&] {
        auto timeout = std::chrono::milliseconds(timeout_ms);
        auto options = c10d::ProcessGroupNCCL::Options::create();
        options->timeout = timeout;
        auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, world, options);
        *out = new SwGroup{group, timeout, ::kNoTimeout};
    });
}

}  // namespace

extern "C" char* sw_nccl_api(uint32_t version, SwNcclApi* out) {
    if (version != SW_NCCL_API_VERSION) {
        return stagewise::error_message(("the NCCL plugin implements API version " +
                                         std::to_string(SW_NCCL_API_VERSION) + ", the trainer wants " +
                                         std::to_string(version) + "; rebuild it with `just gpu-build`")
                                            .c_str());
    }
    *out = SwNcclApi{SW_NCCL_API_VERSION, sizeof(SwNcclApi), free_message, group};
    return nullptr;
}
