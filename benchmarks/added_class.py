"""python -m benchmarks.added_class BUNDLE — how well a class added from text alone is recognized.

Generates synthact samples of the class the robot example adds (`examples/robot.py`: "wave right
hand", with its sentence), adds it to the bundle's classes with `add_classes`, and reports its top-1
among the bundle's classes plus itself, and what it is mistaken for. The samples come from a data
seed training never used.

    python -m benchmarks.added_class engines/demo --samples 100
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter

# what examples/robot.py adds (tests/runtime/test_add_classes.py keeps the two equal)
NAME = "wave right hand"
DESCRIPTION = "A person raises the right hand and waves it from side to side."
MAX_SAMPLES = 100_000  # 100,000 windows of 2 × 64 × 25 × 3 float32 = 3.8 GB
SEED = 1000  # synthact data seed of the samples: not the demo's (0) nor any validation seed


def measure(
    bundle: str, name: str = NAME, description: str = DESCRIPTION, samples: int = 100, seed: int = SEED
) -> dict:
    """{"top1": fraction of the added class's samples labelled with it, "mistaken_for": {class: count},
    "classes": the bundle's classes + the added one, "samples": n}."""
    from tdsm_edge import ZeroShotRecognizer
    from tdsm_edge.data.synthact import find_class, generate

    rec = ZeroShotRecognizer.load(bundle, threads=1)
    frames = int(rec.manifest.data["skeleton"]["preprocess"]["frames"])
    windows, _ = generate([find_class(name).index], samples, seed=seed, frames=frames)  # (N, M, T, V, 3)
    rec.add_classes([name], [description])
    preds = rec.predict_batch(windows)
    labels = Counter(p.label for p in preds)
    return {
        "top1": labels.get(name, 0) / samples,
        "mistaken_for": {k: v for k, v in labels.items() if k != name},
        "classes": rec.classes,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    from tdsm_edge.cli import HelpFormatter, run_main, setup_logging

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.added_class", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("bundle", help="an engine bundle with the text side (built from a MiniLM run)")
    p.add_argument("--name", default=NAME, help="the synthact class to add from text")
    p.add_argument("--description", default=DESCRIPTION, help="its sentence")
    p.add_argument("--samples", type=int, default=100, help="generated samples of the class")
    p.add_argument("--seed", type=int, default=SEED, help="synthact data seed of the samples")
    args = p.parse_args(argv)
    if not 1 <= args.samples <= MAX_SAMPLES:
        p.error(f"--samples must lie in [1, {MAX_SAMPLES}], got {args.samples}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0 (a numpy seed), got {args.seed}")
    setup_logging("WARNING")

    def body() -> None:
        r = measure(args.bundle, args.name, args.description, args.samples, args.seed)
        wrong = ", ".join(f"{k} {v}" for k, v in sorted(r["mistaken_for"].items(), key=lambda kv: -kv[1]))
        print(
            f"{args.bundle}: '{args.name}' added from text, top-1 {100 * r['top1']:.0f}% of {r['samples']} samples "
            f"among {len(r['classes'])} classes; mistaken for: {wrong or 'nothing'}"
        )

    return run_main(body, logging.getLogger("benchmarks.added_class"))


if __name__ == "__main__":
    from tdsm_edge.cli import exit_main

    exit_main(main())
