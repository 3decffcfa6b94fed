#!/usr/bin/env python3
"""Every number a run logged, one line each, in the log's order: `KIND step S KEY VALUE`.

Used by the soak scripts to compare runs bit for bit: the JSON text of a number is its shortest
round-trip form, so equal text means equal bits. Left out: what differs between two correct runs
of one computation (wall-clock seconds, tokens per second, the run's name and checkpoint paths).
With --no-checkpoints, checkpoint lines too (a stopped run checkpoints where it stops).

Exits 1 naming the file and line when a line is not JSON or a (kind, step) appears twice.
"""
import json
import sys

SKIP = {"run", "seconds", "tokens_per_s", "path", "kind", "step"}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    no_checkpoints = "--no-checkpoints" in sys.argv
    path = args[0]
    seen = set()
    out = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                d = json.loads(line)
            except ValueError as e:
                sys.exit(f"{path}:{number}: not a JSON line ({e})")
            key = (d["kind"], d["step"])
            if key in seen:
                sys.exit(f"{path}:{number}: {d['kind']} step {d['step']} logged twice")
            seen.add(key)
            if no_checkpoints and d["kind"] == "checkpoint":
                continue
            for k in sorted(d):
                if k not in SKIP:
                    out.append(f'{d["kind"]} step {d["step"]} {k} {json.dumps(d[k])}')
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
