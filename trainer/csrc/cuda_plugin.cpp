// The CUDA plugin (`libstagewise_cuda.so`): CUDA graphs, a side stream and events for the training
// step, behind the versioned table of cuda_api.h. Built like the NCCL plugin by
// scripts/build-cuda-plugins against the CUDA runtime headers of the nvidia wheels torch 2.11.0
// uses; it links nothing, its ATen/c10 symbols resolve from the libtorch_cuda.so the trainer has
// loaded (RTLD_GLOBAL) when it dlopens this file. The CPU build and CI never see it.
//
// The pattern is PyTorch's whole-network capture (torch.cuda.graph): warm up and capture on a side
// stream, share one memory pool between the graphs, replay on the current stream.

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <array>
#include <cstdlib>
#include <memory>
#include <optional>

#include "cuda_api.h"
#include "shim.h"

using stagewise::guarded;

struct SwCudaGraph {
    std::unique_ptr<at::cuda::CUDAGraph> graph = std::make_unique<at::cuda::CUDAGraph>();
    bool capturing = false;
};

struct SwCudaEvent {
    c10::cuda::CUDAEvent event;
};

namespace {

constexpr size_t kMaxDevices = 64;

// Per device: the side stream (one, for warm-up and every capture, as torch.cuda.graph's default
// capture stream) and the stream that was current before `side_stream_enter`.
struct Streams {
    std::optional<c10::cuda::CUDAStream> side;
    std::optional<c10::cuda::CUDAStream> previous;
};
thread_local std::array<Streams, kMaxDevices> streams;

Streams& of(int8_t device) {
    TORCH_CHECK(device >= 0 && static_cast<size_t>(device) < kMaxDevices, "CUDA device ", int(device), " out of range");
    return streams[static_cast<size_t>(device)];
}

void free_message(char* message) { std::free(message); }

char* init(int8_t device) {
    return guarded([&] {
        // force=true: cudaSetDevice even when the index already matches, which binds the primary
        // context to this thread before the first cuBLAS handle is made.
        c10::cuda::set_device(device, /*force=*/true);
    });
}

char* pool(SwGraphPool* out) {
    return guarded([&] {
        auto id = at::cuda::graph_pool_handle();
        *out = SwGraphPool{id.first, id.second};
    });
}

char* side_stream_enter(int8_t device) {
    return guarded([&] {
        auto& s = of(device);
        TORCH_CHECK(!s.previous.has_value(), "side stream entered twice");
        if (!s.side.has_value()) {
            s.side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device);
        }
        auto previous = c10::cuda::getCurrentCUDAStream(device);
        c10::cuda::CUDAEvent ready;
        ready.record(previous);
        ready.block(*s.side);
        c10::cuda::setCurrentCUDAStream(*s.side);
        s.previous = previous;
    });
}

char* side_stream_exit(int8_t device) {
    return guarded([&] {
        auto& s = of(device);
        TORCH_CHECK(s.previous.has_value(), "side stream exited without being entered");
        c10::cuda::CUDAEvent done;
        done.record(*s.side);
        done.block(*s.previous);
        c10::cuda::setCurrentCUDAStream(*s.previous);
        s.previous.reset();
    });
}

char* graph_new(SwCudaGraph** out) {
    return guarded([&] { *out = new SwCudaGraph(); });
}

char* graph_begin(SwCudaGraph* graph, SwGraphPool pool) {
    return guarded([&] {
        graph->graph->capture_begin({pool.first, pool.second}, cudaStreamCaptureModeThreadLocal);
        graph->capturing = true;
    });
}

char* graph_end(SwCudaGraph* graph) {
    return guarded([&] {
        graph->capturing = false;
        graph->graph->capture_end();
    });
}

char* graph_abort(SwCudaGraph* graph) {
    return guarded([&] {
        if (graph->capturing) {
            graph->capturing = false;
            // Ends the capture on its stream whatever happened during it; an invalidated capture
            // throws here, which is the error we already know about.
            try {
                graph->graph->capture_end();
            } catch (const std::exception&) {
            }
        }
        graph->graph = std::make_unique<at::cuda::CUDAGraph>();
    });
}

char* graph_replay(SwCudaGraph* graph) {
    return guarded([&] { graph->graph->replay(); });
}

void graph_free(SwCudaGraph* graph) { delete graph; }

char* event_new(SwCudaEvent** out) {
    return guarded([&] { *out = new SwCudaEvent(); });
}

char* event_record(SwCudaEvent* event, int8_t device) {
    return guarded([&] { event->event.record(c10::cuda::getCurrentCUDAStream(device)); });
}

char* event_synchronize(SwCudaEvent* event) {
    return guarded([&] { event->event.synchronize(); });
}

void event_free(SwCudaEvent* event) { delete event; }

}  // namespace

extern "C" char* sw_cuda_api(uint32_t version, SwCudaApi* out) {
    if (version != SW_CUDA_API_VERSION) {
        return stagewise::error_message(
            ("the CUDA plugin implements API version " + std::to_string(SW_CUDA_API_VERSION) + ", the trainer wants " +
             std::to_string(version) + "; rebuild it with `just gpu-build`")
                .c_str());
    }
    *out = SwCudaApi{
        SW_CUDA_API_VERSION,
        sizeof(SwCudaApi),
        free_message,
        init,
        pool,
        side_stream_enter,
        side_stream_exit,
        graph_new,
        graph_begin,
        graph_end,
        graph_abort,
        graph_replay,
        graph_free,
        event_new,
        event_record,
        event_synchronize,
        event_free,
    };
    return nullptr;
}
