// The handles of the c10d shim (dist.cpp) and its NCCL plugin (dist_nccl.cpp), opaque to Rust.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

// A rendezvous store.
struct SwStore {
    c10::intrusive_ptr<c10d::Store> store;
};

// A process group (Gloo or NCCL) and the timeout of its collectives.
struct SwGroup {
    c10::intrusive_ptr<c10d::Backend> backend;
    std::chrono::milliseconds timeout;
};
