// PyTorch's distributed engine (c10d) for data-parallel training, behind a small C ABI (Rust
// side: src/dist.rs): the TCPStore rendezvous torchrun sets up, a Gloo process group, and the
// collectives a step needs. A NCCL group comes from the plugin `dist_nccl.cpp` (built by `just
// gpu-build`), which returns the same `c10d::Backend` handle.
//
// Kept in its own translation unit: the c10d headers take ~20 s to compile. Errors come back as
// malloc'd messages (shim.h); a missing rank surfaces as a store or collective timeout.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "dist.h"
#include "shim.h"

using stagewise::guarded;

namespace {

c10d::ReduceOp reduce_op(SwReduce op) {
    switch (op) {
        case SW_REDUCE_SUM:
            return c10d::ReduceOp::SUM;
        case SW_REDUCE_MAX:
            return c10d::ReduceOp::MAX;
    }
    throw std::invalid_argument("unknown reduction " + std::to_string(static_cast<int>(op)));
}

}  // namespace

extern "C" {

// The rendezvous: a TCPStore at host:port (rank 0 serves it unless `client_only`, as under
// torchrun's elastic agent, which serves it already), under `prefix` (torchrun's per-attempt
// prefix, so a restarted job never reads the keys of the attempt before). Every rank then checks
// in and waits for the others; a rank that never comes is named in the error, not just counted.
char* sw_dist_store(const char* host, uint16_t port, int rank, int world, bool client_only, int64_t timeout_ms,
                    const char* prefix, SwStore** out) {
    return guarded([&] {
        auto timeout = std::chrono::milliseconds(timeout_ms);
        c10d::TCPStoreOptions options;
        options.port = port;
        options.isServer = rank == 0 && !client_only;
        options.numWorkers = world;
        options.waitWorkers = false;
        options.timeout = timeout;
        c10::intrusive_ptr<c10d::Store> tcp;
        try {
            tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
        } catch (const std::exception& e) {
            if (options.isServer) throw;
            throw std::runtime_error(std::string("nobody serves the rendezvous (is rank 0 running, with the same "
                                                 "MASTER_ADDR and MASTER_PORT?): ") + e.what());
        }
        auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
        store->set("joined/" + std::to_string(rank), std::vector<uint8_t>{1});
        std::vector<std::string> keys;
        for (int r = 0; r < world; ++r) keys.push_back("joined/" + std::to_string(r));
        try {
            store->wait(keys, timeout);
        } catch (const std::exception&) {
            std::string missing;
            int count = 0;
            for (int r = 0; r < world; ++r) {
                if (!store->check({keys[r]})) {
                    missing += (count++ ? ", " : "") + std::to_string(r);
                }
            }
            throw std::runtime_error(std::string(count == 1 ? "rank " : "ranks ") + missing + " of " +
                                     std::to_string(world) + " did not join within " +
                                     std::to_string(timeout_ms / 1000) + " s");
        }
        *out = new SwStore{store};
    });
}

void sw_dist_store_free(SwStore* store) { delete store; }

// A Gloo process group over `store` (devices from GLOO_SOCKET_IFNAME, else the host name).
char* sw_dist_gloo(SwStore* store, int rank, int world, int64_t timeout_ms, SwGroup** out) {
    return guarded([&] {
        auto timeout = std::chrono::milliseconds(timeout_ms);
        auto options = c10d::ProcessGroupGloo::Options::create_default(timeout);
        auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, world, options);
        *out = new SwGroup{group, timeout, timeout};
    });
}

void sw_dist_group_free(SwGroup* group) { delete group; }

// End the group cleanly, as `destroy_process_group()` does (NCCL finalizes its communicators and
// joins its watchdog; without it ProcessGroupNCCL warns at exit and aborts). Every rank calls it
// after its last collective.
char* sw_dist_group_shutdown(SwGroup* group) {
    return guarded([&] { group->backend->shutdown(); });
}

// In-place all-reduce of one dense tensor (Gloo has no average).
char* sw_dist_all_reduce(SwGroup* group, at::Tensor* tensor, SwReduce op) {
    return guarded([&] {
        std::vector<at::Tensor> tensors{*tensor};
        c10d::AllreduceOptions options;
        options.reduceOp = reduce_op(op);
        options.timeout = group->timeout;
        group->backend->allreduce(tensors, options)->wait(group->wait);
    });
}

// In-place broadcast of one dense tensor from `root`.
char* sw_dist_broadcast(SwGroup* group, at::Tensor* tensor, int root) {
    return guarded([&] {
        std::vector<at::Tensor> tensors{*tensor};
        c10d::BroadcastOptions options;
        options.rootRank = root;
        options.timeout = group->timeout;
        group->backend->broadcast(tensors, options)->wait(group->wait);
    });
}

}  // extern "C"
