// The NCCL plugin's interface (`libstagewise_nccl.so`, built from dist_nccl.cpp by
// scripts/build-cuda-plugins): c10d's ProcessGroupNCCL behind the same handles as the Gloo group
// of dist.cpp (dist.h).
//
// As cuda_api.h: one symbol, `sw_nccl_api`, with a signature fixed for every version, fills the
// table of SW_NCCL_API_VERSION (and refuses any other); the trainer checks its size too, so no
// symbol is ever cast to a signature it might not have. Bump the version with any change below.
#pragma once

#include <stdint.h>

#define SW_NCCL_API_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

struct SwStore;
struct SwGroup;

typedef struct SwNcclApi {
    uint32_t version;  // SW_NCCL_API_VERSION
    uint32_t size;     // sizeof(SwNcclApi)
    void (*free_message)(char* message);
    // A NCCL process group over `store` (from `sw_dist_store` of the trainer), as `sw_dist_gloo`.
    char* (*group)(struct SwStore* store, int rank, int world, int64_t timeout_ms, struct SwGroup** out);
} SwNcclApi;

// Fill `out` with the table of `version`; an error (and nothing filled) for any other version.
char* sw_nccl_api(uint32_t version, SwNcclApi* out);

#ifdef __cplusplus
}
#endif
