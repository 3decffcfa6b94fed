#!/usr/bin/env python3
"""Summarise one device run of scripts/gpu-bench.sh as markdown tables (stdout and summary.md).

Usage: gpu-summary.py OUT_DIR
Reads, when present: ours.jsonl (our bench, bf16, full + 4-stage phases), variants.tsv and the
ours-<slug>.jsonl files it names (the full step with one setting changed), torch.jsonl
(scripts/anchors/torch_gpt.py, the PyTorch anchor), and the smoke runs' metrics (OUT_DIR/runs/smoke-a, smoke-b).
Plain Python, no third-party modules, so it runs on the device machine and here alike.
"""
import json
import sys
from pathlib import Path


def read_jsonl(path):
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def fmt(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"


def is_full(row):
    """The full-model line of `train bench` (stage 0, phase baseline)."""
    return row.get("phase") == "baseline"


def anchor_step(torch_rows, mode):
    """The anchor's full step in `mode` (eager, compile, ...), if it ran without error."""
    return next((r for r in torch_rows if r.get("what") == "full_step" and r.get("mode") == mode and "ms" in r), None)


def throughput(ours, torch_rows, ablations):
    full = next((r for r in ours if is_full(r)), None)
    eager = anchor_step(torch_rows, "eager")
    compiled = anchor_step(torch_rows, "compile")
    shape = f"micro-batch {full['micro_batch']} x {full['context']}" if full else "no bench output"
    out = [f"## Full GPT-2 124M step ({shape})", "",
           "| implementation | ms/step | tokens/s | vs PyTorch eager | MFU |", "|---|---|---|---|---|"]
    eager_tok = eager["tok_s"] if eager else None

    def row(name, ms, tok, mfu=None):
        ratio = f"{tok / eager_tok:.3f}x" if eager_tok and tok else "-"
        mfu_text = f"{mfu:.1%}" if mfu else "-"
        out.append(f"| {name} | {fmt(ms)} | {fmt(tok, 0)} | {ratio} | {mfu_text} |")

    if full:
        precision = "bf16 autocast" if full["bf16"] else "fp32"
        row(f"stagewise (tch), {precision}", full["ms_per_step"], full["tokens_per_s"], full.get("mfu"))
    for name, rows in ablations:
        r = next((r for r in rows if is_full(r)), None)
        if r:
            row(name, r["ms_per_step"], r["tokens_per_s"], r.get("mfu"))
    if eager:
        row("PyTorch eager (anchor)", eager["ms"], eager["tok_s"])
    if compiled:
        row("PyTorch torch.compile (anchor)", compiled["ms"], compiled["tok_s"])
    if full and full.get("gpu_memory_bytes"):
        out.append("")
        out.append(f"GPU memory in use after our timed steps: {full['gpu_memory_bytes'] / 2**30:.1f} GiB.")
    return out


def phases(ours, torch_rows):
    full = next((r for r in ours if is_full(r)), None)
    torch_full = anchor_step(torch_rows, "eager")
    torch_phase = {(r["active"], r["phase"]): r["ms"] for r in torch_rows if r.get("what") == "phase_step"}
    out = ["## Phases of a 4-stage schedule: measured step time vs the FLOP model", "",
           "| configuration | ours ms | ours / full | FLOP model | saving realised within 10%? | PyTorch ms | PyTorch / full |",
           "|---|---|---|---|---|---|---|"]
    for r in ours:
        if is_full(r):
            continue
        phase = 1 if r["phase"] == "phase1" else 2
        t = torch_phase.get((r["active_layers"], phase))
        t_rel = t / torch_full["ms"] if t and torch_full else None
        # The target: realise the predicted saving to within 10%. Cheaper than predicted counts.
        off = r["measured_ratio"] / r["predicted_ratio"] - 1
        verdict = f"{'yes' if off <= 0.10 else 'no'} ({off:+.0%})"
        out.append(f"| {r['config']} ({r['active_layers']} active) | {fmt(r['ms_per_step'])} | "
                   f"{r['measured_ratio']:.3f} | {r['predicted_ratio']:.3f} | {verdict} | {fmt(t)} | "
                   f"{fmt(t_rel, 3)} |")
    if full:
        out.append("")
        out.append(f"Full step for the ratios: {full['ms_per_step']:.1f} ms (ours).")
    return out


def smoke(runs):
    def losses(run):
        path = runs / run / "metrics.jsonl"
        return {r["step"]: r["loss"] for r in read_jsonl(path) if r.get("kind") == "train"}

    a, b = losses("smoke-a"), losses("smoke-b")
    if not a:
        return []
    steps = sorted(a)
    out = ["## Training smoke test (gpt2-124m, embedded corpus)", "",
           f"Steps {steps[0]}..{steps[-1]}: loss {a[steps[0]]:.4f} -> {a[steps[-1]]:.4f}."]
    common = [s for s in steps if s in b]
    if common:
        diffs = [abs(a[s] - b[s]) for s in common]
        same = all(a[s] == b[s] for s in common)
        out.append(f"Stopped at step 15 and resumed: {len(common)} steps compared, "
                   f"{'bit-identical' if same else f'max |loss difference| {max(diffs):.2e}'}.")
    return out


def data_parallel(runs):
    def losses(run):
        path = runs / run / "metrics.jsonl"
        return {r["step"]: r["loss"] for r in read_jsonl(path) if r.get("kind") == "train"}

    nccl, one, two = losses("nccl-1"), losses("gloo-1"), losses("gloo-2")
    out = []
    if nccl:
        steps = sorted(nccl)
        out.append(f"NCCL, one rank: loss {nccl[steps[0]]:.4f} -> {nccl[steps[-1]]:.4f} over steps {steps[0]}..{steps[-1]}.")
    elif one or two:
        out.append("NCCL, one rank: no steps logged (see the nccl-1 lines of the raw output for why).")
    common = [s for s in sorted(one) if s in two]
    if common:
        gap = max(abs(one[s] - two[s]) for s in common)
        out.append(f"Gloo on CUDA tensors, 2 processes vs 1 (same global batch, fp32): {len(common)} steps, "
                   f"max |loss difference| {gap:.2e}.")
    return (["## Data parallel on the GPU", ""] + out) if out else []


def main():
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".gpu/out")
    ours = read_jsonl(out_dir / "ours.jsonl")
    torch_rows = read_jsonl(out_dir / "torch.jsonl")
    ablations = []
    variants = out_dir / "variants.tsv"
    if variants.exists():
        for line in variants.read_text().splitlines():
            slug, _, label = line.partition("\t")
            ablations.append((f"stagewise, {label}", read_jsonl(out_dir / f"ours-{slug}.jsonl")))
    device = next((r["device"] for r in torch_rows if r.get("what") == "device"), None)
    lines = [f"# Device run: {device or 'device unknown'}", ""]
    lines += throughput(ours, torch_rows, ablations) + [""]
    lines += phases(ours, torch_rows) + [""]
    lines += smoke(out_dir / "runs")
    lines += [""] + data_parallel(out_dir / "runs")
    text = "\n".join(lines).rstrip() + "\n"
    (out_dir / "summary.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
