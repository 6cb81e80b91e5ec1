"""python -m tdsm_edge.train — train and evaluate TDSM end to end (encoder → features → denoiser →
baseline → zero-shot evaluation) and print the summary table.

Data-parallel denoiser training: `torchrun --nproc_per_node 2 -m tdsm_edge.train --config ...`
(rank 0 trains the encoder and evaluates; every rank trains the denoiser on its shard).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tdsm_edge.cli import exit_main

from .cli import HelpFormatter, add_log_level, add_overrides, run_main, start_offline


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tdsm_edge.train", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--config", default="configs/synthact_5.yaml", help="run config (yaml)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    p.add_argument("--splits", nargs="+", default=None, help="split names to run (default: the config's data.split)")
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="model seeds; the summary reports mean ± std over them (default: the config's train.seed)",
    )
    p.add_argument("--iterations", type=int, default=None, help="override train.iterations")
    p.add_argument("--device", default=None, help="override train.device: auto | cpu | cuda")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an existing run: reuse finished stages, resume the denoiser from its latest checkpoint",
    )
    add_overrides(p, 'E.g. --set data.features=/data/shift_ntu60_5_r --set train.amp=bf16')
    p.add_argument("--overwrite", action="store_true", help="delete an existing run folder first")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_log_level(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start_offline(args.log_level)
    from .config import apply_overrides, load_config, replace, validate
    from .errors import ConfigError

    def body() -> None:
        cfg = apply_overrides(load_config(args.config), args.overrides)
        if args.iterations is not None:
            cfg = replace(cfg, train=replace(cfg.train, iterations=args.iterations))
        if args.device is not None:
            cfg = replace(cfg, train=replace(cfg.train, device=args.device))
        validate(cfg)
        out = Path(args.out) if args.out else Path("runs") / cfg.name
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {str(out)!r} is a file; a run is written to a folder: pass a folder path")
        from .training.distributed import init_distributed, resolve_device
        from .training.pipeline import run
        from .training.summary import summary_table

        device = resolve_device(cfg.train.device)
        dist = init_distributed(device)
        summary = run(
            cfg,
            out,
            args.splits or [cfg.data.split],
            args.seeds or [cfg.train.seed],
            dist,
            device,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        if summary is not None:
            print(f"\nResults for {cfg.name} ({out}):\n")
            print(summary_table(summary))

    return run_main(
        body,
        logging.getLogger("tdsm_edge"),
        interrupted="interrupted; finished stages and the latest denoiser checkpoint are kept: run the "
        "same command with --resume to continue",
    )


if __name__ == "__main__":
    exit_main(main())
