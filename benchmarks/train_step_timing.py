"""Time one denoiser training step (triplet diffusion loss + AdamW) and zero-shot scoring per preset.

    python benchmarks/train_step_timing.py --device cpu --presets tiny --steps 10
    python benchmarks/train_step_timing.py --device cuda --presets tiny small paper

Random features and text (pure latency: accuracy is not measured here). Prints one JSON line per
preset: ms per training step at the given batch, and sequences per second for zero-shot scoring
against K classes with J noises.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tdsm_edge.cli import HelpFormatter
from tdsm_edge.config import config_from_dict
from tdsm_edge.models.denoiser import TDSMDenoiser
from tdsm_edge.scoring import noise_bank, score_batched
from tdsm_edge.training.denoiser_trainer import ClassTextTensors, build_training, draw_step, train_step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str, steps: int, warmup: int) -> float:
    """Median seconds of `fn()` over `steps` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_preset(
    preset: str,
    device: str,
    batch: int,
    steps: int,
    classes: int,
    noises: int,
    score_batch: int,
    num_tokens: int,
    cond_dim: int,
) -> dict:
    cfg = config_from_dict(
        {
            "text": {"num_tokens": num_tokens},
            "denoiser": {"preset": preset, "num_tokens": num_tokens, "cond_dim": cond_dim},
            "train": {"batch_size": batch, "iterations": 10_000, "warmup_steps": 10},
        }
    )
    g = torch.Generator().manual_seed(0)
    K, L, Dz = classes, num_tokens, cfg.denoiser.z_dim
    mask = torch.ones(K, L, dtype=torch.bool)
    mask[:, L // 2 :] = False  # half the slots padding, as with short prompts
    tables = ClassTextTensors(
        torch.randn(K, cond_dim, generator=g).to(device),
        torch.randn(K, L, cond_dim, generator=g).to(device),
        mask.to(device),
    )
    n = 4 * batch
    z_all = torch.randn(n, Dz, generator=g).to(device)
    y_all = torch.randint(0, K, (n,), generator=g).to(device)
    model, schedule, opt, _ = build_training(cfg, device)
    seen = np.arange(K)
    state = {"step": 0}

    def one_step():
        d = draw_step(state["step"], 0, n, batch, Dz, cfg.schedule.num_steps, seen)
        d.idx, d.t, d.eps, d.neg = (x.to(device) for x in (d.idx, d.t, d.eps, d.neg))
        train_step(model, schedule, opt, z_all[d.idx], y_all[d.idx], d, tables, cfg)
        state["step"] += 1

    step_s = _timed(one_step, device, steps, warmup=3)

    eval_model = TDSMDenoiser(cfg.denoiser).to(device).eval()
    bank = noise_bank(noises, Dz, 0).to(device)
    z_eval = torch.randn(score_batch, Dz, generator=g).to(device)
    text = (tables.fc, tables.fl, tables.mask)

    def score():
        with torch.no_grad():
            score_batched(eval_model, schedule, z_eval, text, bank, 25)

    score_s = _timed(score, device, max(3, steps // 2), warmup=2)
    return {
        "preset": preset,
        "device": device,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "batch": batch,
        "train_ms_per_step": round(step_s * 1e3, 2),
        "score_classes": K,
        "score_noises": noises,
        "score_batch": score_batch,
        "score_ms_per_batch": round(score_s * 1e3, 2),
        "score_sequences_per_s": round(score_batch / score_s, 1),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"])
    p.add_argument("--batch", type=int, default=256, help="training batch")
    p.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    p.add_argument("--classes", type=int, default=5, help="K classes scored per sequence")
    p.add_argument("--noises", type=int, default=3, help="J noises per class")
    p.add_argument("--score-batch", type=int, default=64, help="sequences per scoring call")
    p.add_argument("--num-tokens", type=int, default=16, help="L text tokens")
    p.add_argument("--cond-dim", type=int, default=768, help="text channels (two 384-d MiniLM prompt sets)")
    args = p.parse_args(argv)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                "threads": torch.get_num_threads(),
            }
        )
    )
    for preset in args.presets:
        print(
            json.dumps(
                time_preset(
                    preset,
                    args.device,
                    args.batch,
                    args.steps,
                    args.classes,
                    args.noises,
                    args.score_batch,
                    args.num_tokens,
                    args.cond_dim,
                )
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
