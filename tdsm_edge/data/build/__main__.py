"""Command line of the skeleton dataset build (see `tdsm_edge.data.build` for the output folder).

    python -m tdsm_edge.data.build ntu --src nturgb+d_skeletons --dataset ntu60 --out data/ntu60 \\
        [--frames 64] [--align-view] [--workers 2] [--chunk-size 256] [--resume | --overwrite]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tdsm_edge.cli import exit_main

from ...cli import HelpFormatter, run_main
from ...errors import DataError
from .engine import build_dataset
from .sources import SOURCES, source_module

log = logging.getLogger("tdsm_edge.data.build")
_DESCRIPTION = (
    "Build a skeleton dataset folder (data.npy, label.npy, info.npy, meta.json, bad_files.json) "
    "from raw recordings: parse, keep two bodies, preprocess, resumable and parallel."
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tdsm_edge.data.build", formatter_class=HelpFormatter, description=_DESCRIPTION
    )
    sub = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name in SOURCES:
        mod = source_module(name)
        sp = sub.add_parser(
            name,
            help=mod.__doc__.splitlines()[0],
            description=mod.__doc__.splitlines()[0],
            formatter_class=HelpFormatter,
        )
        mod.add_arguments(sp)
        sp.add_argument("--dataset", required=True, choices=sorted(mod.DATASETS), help="the dataset to build")
        sp.add_argument("--out", required=True, help="output folder")
        sp.add_argument("--frames", type=int, default=64, help="frames per sequence after resampling")
        sp.add_argument(
            "--align-view",
            action="store_true",
            help="rotate each sequence about the vertical axis so its hip line lies along +x",
        )
        sp.add_argument("--workers", type=int, default=2, help="parsing processes (1: no pool)")
        sp.add_argument("--chunk-size", type=int, default=256, help="files per part, the unit of --resume")
        once = sp.add_mutually_exclusive_group()
        once.add_argument(
            "--resume",
            action="store_true",
            help="continue an interrupted build from its finished parts (same options required)",
        )
        once.add_argument("--overwrite", action="store_true", help="delete a previous build in --out first")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def body() -> None:
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise DataError(f"--out {args.out!r} is a file; the dataset is written to a folder: pass a folder path")
        listing = source_module(args.source).list_items(args)
        build_dataset(
            args.out,
            listing,
            source=args.source,
            dataset=args.dataset,
            frames=args.frames,
            align_view=args.align_view,
            workers=args.workers,
            chunk_size=args.chunk_size,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )

    return run_main(
        body, log, interrupted="interrupted; finished parts are kept: rerun the same command with --resume to continue"
    )


if __name__ == "__main__":
    exit_main(main())
