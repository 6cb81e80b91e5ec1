"""python -m benchmarks.load_time BUNDLE — what a robot pays to start: `load`, the first `add_classes`
(opens the text graph) and one `score_features` call, medians over fresh recognizers, one thread.

    python -m benchmarks.load_time engines/demo --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def measure(bundle: str, repeats: int = 7, calls: int = 50) -> dict[str, float]:
    """Median milliseconds of load, first add_classes (when the bundle has a text side) and score_features."""
    from tdsm_edge import ZeroShotRecognizer
    from tdsm_edge.runtime.text_encoder import has_text_side

    rows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rec = ZeroShotRecognizer.load(bundle, threads=1)
        t1 = time.perf_counter()
        if has_text_side(rec.manifest):
            rec.add_classes(["wave twice"], ["A person waves the right hand twice."])
        t2 = time.perf_counter()
        z = np.zeros((1, rec.manifest.io.graphs["scorer"].inputs[0].dims[1]), np.float32)
        for _ in range(calls):
            rec.score_features(z)
        t3 = time.perf_counter()
        rows.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) / calls * 1e3))
    load, add, score = (statistics.median(c) for c in zip(*rows))
    return {"load_ms": load, "first_add_classes_ms": add, "score_features_ms": score}


def main(argv: list[str] | None = None) -> int:
    from tdsm_edge.cli import HelpFormatter, run_main, setup_logging

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.load_time", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("bundle", help="an engine bundle folder")
    p.add_argument("--repeats", type=int, default=7, help="fresh recognizers to time")
    args = p.parse_args(argv)
    setup_logging("WARNING")

    def body() -> None:
        r = measure(args.bundle, max(1, args.repeats))
        print(
            f"{args.bundle}: load {r['load_ms']:.1f} ms, first add_classes {r['first_add_classes_ms']:.1f} ms, "
            f"score_features {r['score_features_ms']:.3f} ms (medians of {args.repeats}, 1 thread)"
        )

    import logging

    return run_main(body, logging.getLogger("benchmarks.load_time"))


if __name__ == "__main__":
    from tdsm_edge.cli import exit_main

    exit_main(main())
