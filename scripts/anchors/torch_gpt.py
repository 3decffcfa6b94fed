"""The PyTorch anchor: what a user would run instead of stagewise, timed on the same card.

GPT-2 as build-nanogpt's train_gpt2.py writes it (learned positions, pre-LN blocks, tanh GELU,
causal SDPA, tied head, std 0.02 init with the residual projections scaled by (2L)^-0.5), trained
the way it trains it: bf16 autocast, TF32 matmuls (`set_float32_matmul_precision('high')`),
gradient clipping at 1.0, fused AdamW (betas 0.9/0.95, weight decay 0.1 on >= 2-D tensors).

One step = forward, loss, backward, clipping, AdamW, `zero_grad(set_to_none=True)`. Modes:
  eager           plain PyTorch
  compile         torch.compile(model) (build-nanogpt's choice)
  compile-graphs  torch.compile(model, mode="reduce-overhead"): Inductor plus CUDA graphs
  eager-graph     the whole eager step captured as one CUDA graph (PyTorch's "whole network
                  capture": static inputs, capturable AdamW, warm-up on a side stream), replayed
Also, with --phases S: the step time of every phase of an S-stage incremental schedule (phase 1:
only the stage's new blocks train, embeddings and head frozen; phase 2: all active blocks), to
set beside our FLOP model; and --fwd-bwd: forward-only vs forward+backward (backward/forward).

Prints one JSON object per measurement (`what`, `ms`, `tok_s`, ...). Examples:
  python3 torch_gpt.py --preset gpt2-124m --modes eager,compile --phases 4
  python3 torch_gpt.py --d-model 256 --layers 12 --context 256 --vocab 320 --batch 64 \
      --modes eager,compile-graphs,eager-graph
  python3 torch_gpt.py --device cpu --d-model 32 --layers 2 --heads 2 --context 32 --vocab 320 \
      --batch 2 --steps 2 --warmup 1 --modes eager --phases 2        # a dry run on a CPU
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.c_proj.SCALE_INIT = 1
        self.heads = heads

    def forward(self, x):
        b, t, d = x.size()
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)
        self.c_proj.SCALE_INIT = 1

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d), CausalSelfAttention(d, heads)
        self.ln_2, self.mlp = nn.LayerNorm(d), MLP(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, layers, heads, d, context, vocab):
        super().__init__()
        self.layers = layers
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(context, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying, as GPT-2
        self.active = layers  # blocks the forward pass runs (a stage of an incremental schedule)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            std = 0.02 * ((2 * self.layers) ** -0.5 if hasattr(module, "SCALE_INIT") else 1.0)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets):
        t = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for block in self.h[: self.active]:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def adamw(model, lr, capturable):
    """build-nanogpt's configure_optimizers: decay on >= 2-D tensors, fused AdamW."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=fused, capturable=capturable)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(step, device, warmup, steps):
    """Milliseconds per step: `warmup` untimed steps, then `steps` queued back to back."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps * 1e3


def train_step(model, optimizer, x, y, autocast, device):
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def graphed_step(model, x, y, autocast, device):
    """The whole eager step as one CUDA graph over static x, y (PyTorch's whole-network capture)."""
    optimizer = adamw(model, 6e-4, capturable=True)
    step = train_step(model, optimizer, x, y, autocast, device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up: allocator, cuBLAS workspaces, optimizer state
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def build(args, device, mode):
    torch.manual_seed(1337)
    model = GPT(args.layers, args.heads, args.d_model, args.context, args.vocab).to(device)
    autocast = device == "cuda" and not args.fp32
    x = torch.randint(0, args.vocab, (args.batch, args.context), device=device)
    y = torch.randint(0, args.vocab, (args.batch, args.context), device=device)
    if mode == "eager-graph":
        return model, graphed_step(model, x, y, autocast, device)
    compiled = {"eager": model, "compile": None, "compile-graphs": None}[mode]
    if mode == "compile":
        compiled = torch.compile(model)
    elif mode == "compile-graphs":
        compiled = torch.compile(model, mode="reduce-overhead")
    optimizer = adamw(model, 6e-4, capturable=(mode == "compile-graphs"))
    return model, train_step(compiled, optimizer, x, y, autocast, device)


def set_phase(model, active, first_trainable, embeddings):
    """Blocks [first_trainable, active) train, and wte/wpe/ln_f/head with `embeddings` (as
    stagewise's `--phase1-trainable new`); everything else is frozen."""
    model.active = active
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.h[first_trainable:active]:
        for p in block.parameters():
            p.requires_grad_(True)
    if embeddings:
        for module in (model.wte, model.wpe, model.ln_f):
            for p in module.parameters():
                p.requires_grad_(True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["gpt2-124m"], help="GPT-2 124M at micro-batch 16 x 1024")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=None, help="default: d_model / 64 (at least 2)")
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--modes", default="eager", help="comma-separated: eager, compile, compile-graphs, eager-graph")
    parser.add_argument("--phases", type=int, default=0, help="time the phases of an S-stage schedule (eager)")
    parser.add_argument("--fwd-bwd", action="store_true", help="time forward only vs forward+backward (eager)")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    args = parser.parse_args()
    if args.preset == "gpt2-124m":
        args.layers, args.d_model, args.context, args.vocab, args.batch = 12, 768, 1024, 50304, 16
    args.heads = args.heads or max(args.d_model // 64, 2)
    device = args.device
    if device == "cuda":
        torch.set_float32_matmul_precision("high")
    tokens = args.batch * args.context
    shape = dict(layers=args.layers, d_model=args.d_model, context=args.context, vocab=args.vocab, batch=args.batch)

    def emit(**fields):
        print(json.dumps(dict(fields, **shape)), flush=True)

    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    emit(what="device", device=name, torch=torch.__version__)
    for mode in [m for m in args.modes.split(",") if m]:
        try:
            start = time.perf_counter()
            model, step = build(args, device, mode)
            step()
            sync(device)
            first_s = time.perf_counter() - start
            ms = timed(step, device, args.warmup, args.steps)
            emit(what="full_step", mode=mode, ms=ms, tok_s=tokens / ms * 1e3, first_step_s=first_s,
                 params=sum(p.numel() for p in model.parameters()))
            del model, step
        except Exception as e:  # one mode failing (e.g. compile without a compiler) must not stop the rest
            emit(what="full_step", mode=mode, error=str(e)[:300])
        if device == "cuda":
            torch.cuda.empty_cache()

    if args.fwd_bwd:
        model, _ = build(args, device, "eager")
        autocast = device == "cuda" and not args.fp32
        x = torch.randint(0, args.vocab, (args.batch, args.context), device=device)

        def forward():
            with torch.no_grad(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
                model(x, x)

        def forward_backward():
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
                model(x, x).backward()
            model.zero_grad(set_to_none=True)

        f, fb = timed(forward, device, args.warmup, args.steps), timed(forward_backward, device, args.warmup, args.steps)
        emit(what="fwd_vs_fwdbwd", fwd_ms=f, fwdbwd_ms=fb, bwd_over_fwd=(fb - f) / f)
        del model

    if args.phases:
        # Stage s of S adds L/S blocks (even splits only, as the anchor for `train bench --stages S`).
        per_stage = args.layers // args.phases
        for stage in range(1, args.phases + 1):
            active = stage * per_stage
            for phase in (1, 2):
                model, _ = build(args, device, "eager")
                first = active - per_stage if phase == 1 else 0
                # Stage 1's phase 1 trains the embeddings too: nothing has trained yet.
                set_phase(model, active, first, embeddings=(phase == 2 or stage == 1))
                autocast = device == "cuda" and not args.fp32
                x = torch.randint(0, args.vocab, (args.batch, args.context), device=device)
                step = train_step(model, adamw(model, 6e-4, False), x, x, autocast, device)
                ms = timed(step, device, args.warmup, args.steps)
                emit(what="phase_step", stages=args.phases, stage=stage, phase=phase, active=active, ms=ms,
                     tok_s=tokens / ms * 1e3)
                del model, step
                if device == "cuda":
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
