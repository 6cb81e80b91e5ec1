"""Tiny engine bundles written straight from the `tiny` model (export.bundle, no training run): K = 5 classes
with label-only class text, fp32 or fp16. The export tests' `bundle` / `bundle16` fixtures (tests/export/conftest.py)."""

from __future__ import annotations

from pathlib import Path

K = 5
NAMES = ("wave", "kick", "sit down", "jump", "clap")


def write_tiny_bundle(tiny, stats, out: Path, precision: str):
    """(Manifest, tables) of a bundle of the tiny model at `out` (one scorer export, ~10 s)."""
    from export.bundle import BundleRequest, write_bundle
    from tdsm_edge.config import ScheduleConfig
    from tdsm_edge.models.schedule import DDPMSchedule
    from tdsm_edge.runtime.manifest import load_manifest, load_tables
    from tdsm_edge.text.prompts import ClassText

    fc, fl, mask = tiny.text(K)
    text = ClassText(fc.numpy(), (fl * mask[..., None]).numpy(), mask.numpy(), NAMES, "test", ("label",))
    write_bundle(
        BundleRequest(
            out,
            tiny.model(),
            DDPMSchedule(ScheduleConfig()),
            stats,
            text,
            timestep=tiny.t,
            num_noises=3,
            precision=precision,
            build_command="python -m export.build_engine --out demo",
        )
    )
    m = load_manifest(out)
    return m, load_tables(m)
