// The CUDA plugin's interface (`libstagewise_cuda.so`, built from cuda_plugin.cpp by
// scripts/build-cuda-plugins): CUDA graphs, a side stream and events for the training step.
//
// The trainer finds one symbol, `sw_cuda_api`, whose signature is fixed for every version of this
// header, and asks it for the table of version SW_CUDA_API_VERSION: the plugin fills the table
// only when it was built from the same version, and says so otherwise; the trainer also checks
// the table's size. Every other entry is typed here, mirrored by `trainer::cuda::CudaApi`, so no
// symbol is ever cast to a signature it might not have. Bump the version with any change below.
//
// Every function returns NULL on success or a malloc'd message (free it with `free_message`).
#pragma once

#include <stdint.h>

#define SW_CUDA_API_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

typedef struct SwCudaGraph SwCudaGraph;
typedef struct SwCudaEvent SwCudaEvent;

// A memory pool several graphs share (CUDA's pool id: two integers).
typedef struct SwGraphPool {
    uint64_t first;
    uint64_t second;
} SwGraphPool;

typedef struct SwCudaApi {
    uint32_t version;  // SW_CUDA_API_VERSION
    uint32_t size;     // sizeof(SwCudaApi)
    void (*free_message)(char* message);
    // Make `device`'s primary context current on this thread (cudaSetDevice even when the index
    // already matches), before the first cuBLAS handle is made.
    char* (*init)(int8_t device);
    // A new pool id for graphs that share memory (replayed in the order they were captured).
    char* (*pool)(SwGraphPool* out);
    // Make the plugin's side stream of `device` current on this thread, after the previous current
    // stream's work (PyTorch's rule: warm up and capture on a side stream) ...
    char* (*side_stream_enter)(int8_t device);
    // ... and the previous stream current again, after the side stream's work.
    char* (*side_stream_exit)(int8_t device);
    char* (*graph_new)(SwCudaGraph** out);
    // Start capturing on the current stream (the side stream) into `pool`; only this thread's
    // CUDA calls are restricted meanwhile (cudaStreamCaptureModeThreadLocal).
    char* (*graph_begin)(SwCudaGraph* graph, SwGraphPool pool);
    char* (*graph_end)(SwCudaGraph* graph);
    // End a capture that failed, if one is under way, and forget it (no error when none is).
    char* (*graph_abort)(SwCudaGraph* graph);
    // Launch the captured work on the current stream.
    char* (*graph_replay)(SwCudaGraph* graph);
    void (*graph_free)(SwCudaGraph* graph);
    char* (*event_new)(SwCudaEvent** out);
    // Record on the current stream of `device`.
    char* (*event_record)(SwCudaEvent* event, int8_t device);
    // Wait on the host until the work before the last record is done.
    char* (*event_synchronize)(SwCudaEvent* event);
    void (*event_free)(SwCudaEvent* event);
} SwCudaApi;

// Fill `out` with the table of `version`; an error (and nothing filled) for any other version.
char* sw_cuda_api(uint32_t version, SwCudaApi* out);

#ifdef __cplusplus
}
#endif
