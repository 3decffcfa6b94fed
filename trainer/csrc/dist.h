// The handles of the c10d shim (dist.cpp) and its NCCL plugin (dist_nccl.cpp), opaque to Rust,
// and the reductions the shim performs.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

// The reductions of `sw_dist_all_reduce`. trainer/build.rs generates the Rust enum
// (`trainer::world::c10d::Reduce`) from these lines, so both sides hold the same values; the shim
// refuses any other value instead of summing.
enum SwReduce {
    SW_REDUCE_SUM = 0,
    SW_REDUCE_MAX = 1,
};

// A rendezvous store.
struct SwStore {
    c10::intrusive_ptr<c10d::Store> store;
};

// A process group (Gloo or NCCL), the timeout of its collectives, and how long the host waits
// for one: Gloo's finish on the host, so `wait` is the timeout; a NCCL collective is queued on
// the GPU, and any wait other than kNoTimeout (Work.hpp) would make the host spin until the kernel
// ends (a sync every step); NCCL's watchdog enforces `timeout` instead.
struct SwGroup {
    c10::intrusive_ptr<c10d::Backend> backend;
    std::chrono::milliseconds timeout;
    std::chrono::milliseconds wait;
};
