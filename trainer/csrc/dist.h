// The handles of the c10d shim (dist.cpp) and its NCCL plugin (dist_nccl.cpp), opaque to Rust.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

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
