"""Command line for the synthact dataset: list classes, render samples, measure generation speed.

python -m tdsm_edge.data.synthact --list
python -m tdsm_edge.data.synthact --render "kick with left leg" --out kick.png
python -m tdsm_edge.data.synthact --bench
"""

from __future__ import annotations

import argparse
import logging

from tdsm_edge.cli import exit_main

from ...cli import HelpFormatter, run_main
from ...errors import ConfigError
from .classes import CLASSES, NUM_CLASSES, find_class
from .generator import benchmark, generate
from .nuisance import Nuisance
from .splits import UNSEEN, make_splits, write_splits

log = logging.getLogger("tdsm_edge.synthact")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tdsm_edge.data.synthact", description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    p.add_argument("--list", action="store_true", help="print the classes and the splits they are unseen in")
    p.add_argument("--render", metavar="NAME_OR_INDEX", help="render one sample of this class")
    p.add_argument("--out", default="synthact_sample.png", help="output of --render: .png strip or .gif")
    p.add_argument("--sample", type=int, default=0, help="sample index within the class (for --render)")
    p.add_argument("--frames", type=int, default=64, help="frames per sequence")
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--clean", action="store_true", help="render without nuisance (nominal subject, no noise)")
    p.add_argument(
        "--view",
        choices=("front", "side"),
        default="front",
        help="front: the camera view (subject's left on the image right); side: seen from the side",
    )
    p.add_argument("--bench", action="store_true", help="measure generation speed (sequences per second)")
    p.add_argument("--bench-per-class", type=int, default=40, help="sequences per class in --bench")
    p.add_argument("--write-splits", action="store_true", help="regenerate the split files from splits.py")
    return p


def _list() -> None:
    splits = make_splits()
    print(f"{'idx':>3}  {'name':<28} {'primitive':<11} {'part':<6} {'side':<8} unseen in")
    for c in CLASSES:
        member = ",".join(n for n, (u, _) in splits.items() if c.index in u) or "-"
        print(f"{c.index:>3}  {c.name:<28} {c.primitive:<11} {c.part:<6} {c.side:<8} {member}")
    print(f"{NUM_CLASSES} classes; splits: {', '.join(f'{k} ({len(v)} unseen)' for k, v in UNSEEN.items())}")


def _render(key: str, out: str, sample: int, frames: int, seed: int, clean: bool, view: str) -> None:
    from ..render import render_gif, render_strip

    c = find_class(key)
    X, _ = generate([c.index], sample + 1, seed, frames, Nuisance.clean() if clean else None)
    seq = X[sample]  # (2, T, 25, 3)
    if out.lower().endswith(".gif"):
        path = render_gif(seq, out, title=c.name, view=view)
    else:
        path = render_strip(seq, out, title=f"{c.index}: {c.name}", view=view)
    print(f"wrote {path}")


def _bench(per_class: int, frames: int) -> None:
    wall, cpu = benchmark(per_class, frames)
    print(
        f"synthact: {wall:,.0f} sequences/s wall, {cpu:,.0f} sequences/s per CPU second "
        f"({NUM_CLASSES * per_class} sequences of {frames} frames, best of 3, one thread)"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not (args.list or args.render or args.bench or args.write_splits):
        _parser().print_help()
        return 0

    def body() -> None:
        for flag, value, lo, hi in (
            ("--frames", args.frames, 1, 10_000),
            ("--sample", args.sample, 0, 100_000),
            ("--bench-per-class", args.bench_per_class, 1, 10_000),
        ):
            if not lo <= value <= hi:
                raise ConfigError(f"{flag} must lie in [{lo}, {hi}], got {value}")
        if args.write_splits:
            for path in write_splits():
                print(f"wrote {path}")
        if args.list:
            _list()
        if args.render:
            _render(args.render, args.out, args.sample, args.frames, args.seed, args.clean, args.view)
        if args.bench:
            _bench(args.bench_per_class, args.frames)

    return run_main(body, log)


if __name__ == "__main__":
    exit_main(main())
