#!/usr/bin/env python3
"""Summarise one device run of scripts/gpu-bench.sh as markdown tables (stdout and summary.md).

Usage: gpu-summary.py OUT_DIR
Reads what the script wrote to OUT_DIR, when present:
  ours-<shape>-graphs.jsonl, ours-<shape>-eager.jsonl   our full step, CUDA graphs on and off
                                                        (shape: gpt2, d128, d256, d512, ...)
  torch-<shape>.jsonl                                   the PyTorch anchor (scripts/anchors/torch_gpt.py)
  ours.jsonl, torch.jsonl                               the phases of a 4-stage schedule, ours and the anchor's
  variants.tsv + ours-<slug>.jsonl                      our full step with one setting changed
  runs/<name>/metrics.jsonl                             determinism (det-a, det-b, det-c), smoke, data parallel
  ours-stderr.log                                       everything our binary printed to stderr
and checks the targets: small models at least PyTorch's CUDA-graph speed, GPT-2 124M at least 1.2x
PyTorch eager, phase-1 steps within 10% of the FLOP model's saving, zero warning lines. Exits 1 when
a warning line was printed (the targets are reported, not enforced: a benchmark, not a test).
Plain Python, no third-party modules, so it runs on the device machine and here alike.
"""
import json
import re
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


def full(rows):
    return next((r for r in rows if is_full(r)), None)


def anchor_step(rows, mode):
    """The anchor's full step in `mode` (eager, compile, compile-graphs, eager-graph), if it ran."""
    return next((r for r in rows if r.get("what") == "full_step" and r.get("mode") == mode and "ms" in r), None)


ANCHOR_MODES = [("eager", "PyTorch eager"), ("compile", "torch.compile"),
                ("compile-graphs", "compile + CUDA graphs"), ("eager-graph", "eager, one CUDA graph")]


def shapes(out_dir):
    """Shape names in the order the script ran them (gpt2 first)."""
    names = sorted({p.name[len("ours-"):-len("-graphs.jsonl")] for p in out_dir.glob("ours-*-graphs.jsonl")})
    return sorted(names, key=lambda n: (n != "gpt2", n))


def throughput(out_dir):
    out = ["## The full step: ours (CUDA graphs on / off) and the PyTorch anchor, tokens/s", "",
           "| model | ours, graphs | ours, eager | " + " | ".join(label for _, label in ANCHOR_MODES)
           + " | ours / PyTorch eager | ours / PyTorch's best | MFU (ours) | memory (ours) |",
           "|---|---|---|" + "---|" * len(ANCHOR_MODES) + "---|---|---|---|"]
    targets = []
    for name in shapes(out_dir):
        graphs, eager = full(read_jsonl(out_dir / f"ours-{name}-graphs.jsonl")), full(read_jsonl(out_dir / f"ours-{name}-eager.jsonl"))
        torch_rows = read_jsonl(out_dir / f"torch-{name}.jsonl")
        anchors = {mode: anchor_step(torch_rows, mode) for mode, _ in ANCHOR_MODES}
        ours = graphs or eager
        shape = f"{name}, {ours['micro_batch']} x {ours['context']}" if ours else name
        if graphs and not graphs.get("cuda_graphs", False):
            shape += " (graphs did not run: see the log)"
        cells = [fmt(graphs and graphs["tokens_per_s"], 0), fmt(eager and eager["tokens_per_s"], 0)]
        cells += [fmt(a and a["tok_s"], 0) for a in anchors.values()]
        best = max((a["tok_s"] for a in anchors.values() if a), default=None)
        eager_tok = anchors["eager"] and anchors["eager"]["tok_s"]
        ratio = lambda base: f"{ours['tokens_per_s'] / base:.2f}x" if ours and base else "-"
        mfu = f"{ours['mfu']:.1%}" if ours and ours.get("mfu") else "-"
        memory = f"{ours['gpu_memory_bytes'] / 2**30:.1f} GiB" if ours and ours.get("gpu_memory_bytes") else "-"
        out.append(f"| {shape} | " + " | ".join(cells) + f" | {ratio(eager_tok)} | {ratio(best)} | {mfu} | {memory} |")
        if ours and name == "gpt2" and eager_tok:
            r = ours["tokens_per_s"] / eager_tok
            targets.append(f"GPT-2 124M at >= 1.2x PyTorch eager: {'met' if r >= 1.2 else 'NOT met'} ({r:.2f}x)")
        graph_anchor = anchors["compile-graphs"]
        if ours and name in ("d128", "d256") and graph_anchor:
            r = ours["tokens_per_s"] / graph_anchor["tok_s"]
            targets.append(f"{name} at >= PyTorch's CUDA-graph speed: {'met' if r >= 1.0 else 'NOT met'} ({r:.2f}x)")
    return out, targets


def phases(ours, torch_rows):
    base = full(ours)
    torch_full = anchor_step(torch_rows, "eager")
    torch_phase = {(r["active"], r["phase"]): r["ms"] for r in torch_rows if r.get("what") == "phase_step"}
    out = ["## Phases of a 4-stage schedule: measured step time vs the FLOP model", "",
           "| configuration | ours ms | ours / full | FLOP model | saving realised within 10%? | PyTorch ms | PyTorch / full |",
           "|---|---|---|---|---|---|---|"]
    verdicts = []
    for r in ours:
        if is_full(r):
            continue
        phase = 1 if r["phase"] == "phase1" else 2
        t = torch_phase.get((r["active_layers"], phase))
        t_rel = t / torch_full["ms"] if t and torch_full else None
        # The target: realise the predicted saving to within 10%. Cheaper than predicted counts.
        off = r["measured_ratio"] / r["predicted_ratio"] - 1
        verdicts.append((r["phase"], off))
        verdict = f"{'yes' if off <= 0.10 else 'no'} ({off:+.0%})"
        out.append(f"| {r['config']} ({r['active_layers']} active) | {fmt(r['ms_per_step'])} | "
                   f"{r['measured_ratio']:.3f} | {r['predicted_ratio']:.3f} | {verdict} | {fmt(t)} | "
                   f"{fmt(t_rel, 3)} |")
    if base:
        out.append("")
        out.append(f"Full step for the ratios: {base['ms_per_step']:.1f} ms (ours).")
    phase1 = [off for phase, off in verdicts if phase == "phase1"]
    targets = []
    if phase1:
        worst = max(phase1)
        targets.append(f"phase-1 steps within 10% of the FLOP model: {'met' if worst <= 0.10 else 'NOT met'} (worst {worst:+.0%})")
    return out, targets


def variants(out_dir):
    base = full(read_jsonl(out_dir / "ours-gpt2-graphs.jsonl"))
    path = out_dir / "variants.tsv"
    if not path.exists():
        return []
    out = ["## One change at a time (GPT-2 124M, graphs on)", "", "| change | ms/step | tokens/s | vs default | GPU memory |",
           "|---|---|---|---|---|"]
    if base:
        out.append(f"| (default) | {fmt(base['ms_per_step'])} | {fmt(base['tokens_per_s'], 0)} | 1.00x | "
                   f"{fmt((base.get('gpu_memory_bytes') or 0) / 2**30)} GiB |")
    for line in path.read_text().splitlines():
        slug, _, label = line.partition("\t")
        r = full(read_jsonl(out_dir / f"ours-{slug}.jsonl"))
        if r:
            vs = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base else "-"
            out.append(f"| {label} | {fmt(r['ms_per_step'])} | {fmt(r['tokens_per_s'], 0)} | {vs} | "
                       f"{fmt((r.get('gpu_memory_bytes') or 0) / 2**30)} GiB |")
        else:
            out.append(f"| {label} | - | - | - | - |")
    return out


def losses(runs, run):
    path = runs / run / "metrics.jsonl"
    return {r["step"]: r["loss"] for r in read_jsonl(path) if r.get("kind") == "train"}


def compare(a, b):
    common = [s for s in sorted(a) if s in b]
    if not common:
        return None
    return len(common), all(a[s] == b[s] for s in common), max(abs(a[s] - b[s]) for s in common)


def determinism(runs):
    a, b, c = losses(runs, "det-a"), losses(runs, "det-b"), losses(runs, "det-c")
    if not a:
        return []
    out = ["## Determinism (`--deterministic`)", ""]
    for label, other in (("a second run", b), ("a run stopped at 15 and resumed", c)):
        result = compare(a, other)
        if result is None:
            out.append(f"- {label}: no steps logged (see the raw output).")
        else:
            n, same, gap = result
            out.append(f"- {label}: {n} steps compared, " + ("bit-identical." if same else f"NOT identical (max |loss difference| {gap:.2e})."))
    return out


def smoke(runs):
    a, b = losses(runs, "smoke-a"), losses(runs, "smoke-b")
    if not a:
        return []
    steps = sorted(a)
    out = ["## Training smoke test (default settings: CUDA graphs, no determinism)", "",
           f"Steps {steps[0]}..{steps[-1]}: loss {a[steps[0]]:.4f} -> {a[steps[-1]]:.4f}."]
    result = compare(a, b)
    if result:
        n, same, gap = result
        out.append(f"Stopped at step 15 and resumed: {n} steps compared, "
                   f"{'bit-identical' if same else f'max |loss difference| {gap:.2e}'}.")
    return out


def data_parallel(runs):
    nccl, one, two = losses(runs, "nccl-1"), losses(runs, "gloo-1"), losses(runs, "gloo-2")
    out = []
    if nccl:
        steps = sorted(nccl)
        out.append(f"NCCL, one rank: loss {nccl[steps[0]]:.4f} -> {nccl[steps[-1]]:.4f} over steps {steps[0]}..{steps[-1]}.")
    result = compare(one, two)
    if result:
        n, _, gap = result
        out.append(f"Gloo, 2 processes vs 1 (same global batch, fp32): {n} steps, max |loss difference| {gap:.2e}.")
    return (["## Data parallel", ""] + out) if out else []


# What counts as a warning line in our binary's stderr.
WARNING = re.compile(r"warn|deprecated|Attempting to run cuBLAS|destroy_process_group|error", re.IGNORECASE)


def warnings(out_dir):
    path = out_dir / "ours-stderr.log"
    if not path.exists():
        return [], None
    lines = [l for l in path.read_text(errors="replace").splitlines() if WARNING.search(l)]
    out = ["## Warning lines from our binary", "",
           f"{len(lines)} warning lines in {path.name}." + ("" if lines else " Clean.")]
    out += [f"    {l[:200]}" for l in lines[:10]]
    return out, len(lines)


def main():
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".gpu/out")
    device = next((r["device"] for r in read_jsonl(out_dir / "torch-gpt2.jsonl") if r.get("what") == "device"), None)
    lines = [f"# Device run: {device or 'device unknown'}", ""]
    table, targets = throughput(out_dir)
    lines += table + [""]
    phase_table, phase_targets = phases(read_jsonl(out_dir / "ours.jsonl"), read_jsonl(out_dir / "torch.jsonl"))
    lines += phase_table + [""]
    lines += variants(out_dir) + [""]
    lines += determinism(out_dir / "runs") + [""]
    lines += smoke(out_dir / "runs") + [""]
    lines += data_parallel(out_dir / "runs") + [""]
    warning_lines, count = warnings(out_dir)
    lines += warning_lines + [""]
    targets += phase_targets
    if count is not None:
        targets.append(f"zero warning lines: {'met' if count == 0 else 'NOT met'} ({count})")
    lines += ["## Targets", ""] + [f"- {t}" for t in targets]
    text = "\n".join(lines).rstrip() + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    (out_dir / "summary.md").write_text(text)
    print(text, end="")
    if count:
        sys.exit(1)


if __name__ == "__main__":
    main()
