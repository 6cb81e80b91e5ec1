"""python -m tdsm_edge.evaluate — re-evaluate trained seeds of a run (zero-shot and GZSL), optionally
sweeping the number of noises J and the timestep t, and print the summary table.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tdsm_edge.cli import exit_main

from .cli import HelpFormatter, add_log_level, add_overrides, run_main, start_offline


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tdsm_edge.evaluate", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument(
        "--run", required=True, help="run folder (runs/<name>) or one seed folder (runs/<name>/<split>/seed1)"
    )
    p.add_argument(
        "--noises", type=int, default=None, help="J: noises in the fixed bank (default: the run's eval.num_noises)"
    )
    p.add_argument(
        "--timestep", type=int, default=None, help="t: fixed diffusion step (default: the run's eval.timestep)"
    )
    p.add_argument(
        "--sweep-noises", type=int, nargs="*", default=None, help="also evaluate these J and plot accuracy vs J"
    )
    p.add_argument(
        "--sweep-timesteps", type=int, nargs="*", default=None, help="also evaluate these t and plot accuracy vs t"
    )
    add_overrides(
        p,
        "The run's config, e.g. --set data.features=PATH; a run without config.yaml (a converted published checkpoint) gets the --config file's",
    )
    p.add_argument(
        "--config", default=None, help="config yaml to store in a run folder that has none (default: refuse)"
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument(
        "--ablations",
        action="store_true",
        help="also score with each text path emptied of class identity (global fc / local fl replaced "
        "by their mean over the classes): how much TDSM's decisions rest on each",
    )
    add_log_level(p)
    return p


def _seed_dirs(run: Path) -> list[Path]:
    if (run / "denoiser").is_dir():
        return [run]
    return sorted(p for p in run.glob("*/seed*") if (p / "denoiser").is_dir() and p.name[4:].isdigit())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start_offline(args.log_level)
    from .config import replace, validate
    from .errors import DataError

    def body() -> None:
        from .training.distributed import resolve_device
        from .training.pipeline import trained_class_text, trained_config

        device = resolve_device(args.device)  # a bad --device fails before anything is read
        run = Path(args.run)
        seeds = _seed_dirs(run)
        if not seeds:
            raise DataError(
                f"{str(run)!r} holds no trained seed folder (…/<split>/seed<k>/denoiser); "
                "train one first with python -m tdsm_edge.train."
            )
        root = seeds[0].parent.parent
        cfg = trained_config(root, args.config, args.overrides)
        ev = cfg.eval
        changes = {
            k: v
            for k, v in dict(
                num_noises=args.noises,
                timestep=args.timestep,
                sweep_noises=tuple(args.sweep_noises) if args.sweep_noises is not None else None,
                sweep_timesteps=tuple(args.sweep_timesteps) if args.sweep_timesteps is not None else None,
            ).items()
            if v is not None
        }
        cfg = replace(cfg, eval=replace(ev, **changes))
        validate(cfg)
        from .training.evaluation import evaluate_seed
        from .training.split_data import seed_features, split_classes
        from .training.summary import summarize, summary_table, write_summary

        text = trained_class_text(cfg, root)
        results: dict = {}
        for sd in seeds:
            split = sd.parent.name
            unseen, _ = split_classes(cfg.data.dataset, split)
            feats = seed_features(cfg, sd, unseen, len(text.names))
            m = evaluate_seed(sd, feats, text, unseen, cfg.eval, device, ablations=args.ablations)
            results.setdefault(split, {})[int(sd.name[4:])] = m
            abl = m["tdsm"].get("ablations")
            print(
                f"{sd}: TDSM unseen top-1 {100 * m['tdsm']['zsl']['top1']:.1f}%"
                + (
                    f" (fc → class mean {100 * abl['fc_mean']:.1f}%, fl → class mean {100 * abl['fl_mean']:.1f}%)"
                    if abl
                    else ""
                )
            )
        summary = summarize(results, root)
        if len(seeds) > 1 or seeds[0] != run:
            write_summary(root, summary)
        print(summary_table(summary))

    return run_main(
        body,
        logging.getLogger("tdsm_edge"),
        interrupted="interrupted; seeds evaluated so far have new metrics.json "
        "files (each written whole), the others are unchanged: run the same command again",
    )


if __name__ == "__main__":
    exit_main(main())
