"""Verify a bundle against the PyTorch reference on held-out samples (the build fails when it is off).

    scorer graph   OrtBackend(bundle).errors(z)  vs  `evaluation.tdsm_errors` (the batched torch scorer
                   over the run's denoiser, the same t, J and noise seed) on held-out features z
    encoder graph  the ONNX encoder vs the torch ShiftGCN features on held-out windows, and the
                   whole chain (encoder graph → scorer graph vs torch encoder → torch scorer)
    text side      the runtime's tokenizer → text graph → tables graph on the bundle's own class prompts
                   vs tables.npz (the training-side features through class_tables); fails above 1e-3

Reported: max abs error, max relative error, top-1 agreement (and accuracy when labels are known).
Thresholds (issue 4): fp32 fails above 1e-4 relative error; fp16 fails below 99% top-1 agreement.
Relative error is elementwise |a − b| / |b| for the scores (positive sums of squared errors); for
encoder features, which cross zero, it is max |a − b| / max |b|.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tdsm_edge.errors import ExportError
from tdsm_edge.runtime.iospec import TEXT_GRAPH
from tdsm_edge.runtime.ort_backend import OrtBackend

log = logging.getLogger(__name__)

FP32_MAX_REL = 1e-4
FP16_MIN_TOP1 = 0.99
TEXT_MAX_REL = 1e-3  # the text side (always fp32) vs tables.npz: max |a − b| / max |b| over each table


def compare(got: np.ndarray, ref: np.ndarray, per_element: bool = True, top1: bool = True) -> dict:
    """max abs / relative error and (scores only) top-1 agreement, argmin over the last axis, of two (N, K) arrays."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        raise ExportError(f"verify: shapes differ, bundle {got.shape} vs reference {ref.shape}")
    diff = np.abs(got - ref)
    if per_element:
        rel = float((diff / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)).max()) if diff.size else 0.0
    else:
        rel = float(diff.max() / max(np.abs(ref).max(), np.finfo(np.float32).tiny)) if diff.size else 0.0
    out = {"max_abs_err": float(diff.max()) if diff.size else 0.0, "max_rel_err": rel}
    if top1:
        out["top1_agreement"] = float((got.argmin(1) == ref.argmin(1)).mean()) if len(got) else 1.0
    return out


def judge(precision: str, stats: dict, what: str) -> list[str]:
    """The issue's thresholds applied to one comparison; returns the failures (empty = passed)."""
    if precision == "fp32" and stats["max_rel_err"] > FP32_MAX_REL:
        return [f"{what}: fp32 max relative error {stats['max_rel_err']:.3g} > {FP32_MAX_REL:g}"]
    if precision == "fp16" and stats.get("top1_agreement", 1.0) < FP16_MIN_TOP1:
        return [f"{what}: fp16 top-1 agreement {stats['top1_agreement']:.2%} < {FP16_MIN_TOP1:.0%}"]
    return []


def verify_bundle(
    bundle_dir: str | Path | OrtBackend,
    model,
    schedule,
    stats,
    class_text,
    z: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    encoder=None,
    windows: np.ndarray | None = None,
    providers: str = "cpu",
    threads: int | None = None,
    raise_on_fail: bool = True,
) -> dict:
    """Run the bundle and the torch reference on the same held-out samples and compare.

    Args:
        bundle_dir: the (possibly staged) bundle, or its scorer already open (its classes all active).
        model, schedule, stats: the run's denoiser (`load_denoiser`).
        class_text: ClassText of the bundle's classes in score order.
        z: `(N, Dz) float32` held-out raw features; labels: `(N,)` global class indices or None.
        encoder: the torch ShiftGCN, with `windows (N', 3, T, V, M) float32`: also checks the encoder graph.
        providers: ONNX Runtime providers for the bundle (see `resolve_providers`).
        raise_on_fail: raise ExportError when a threshold fails (the report is in the message).
    Returns:
        The report dict (stored in the manifest's "verify" entry).
    """
    from tdsm_edge.training.evaluation import tdsm_errors

    scorer = (
        bundle_dir
        if isinstance(bundle_dir, OrtBackend)
        else OrtBackend(bundle_dir, providers=providers, threads=threads)
    )
    m = scorer.manifest
    s = m.data["scoring"]
    precision = m.precision
    if list(class_text.names) != m.class_names:
        raise ExportError(
            f"verify: the reference classes {list(class_text.names)} are not the bundle's {m.class_names}"
        )

    def ref_fn(feats: np.ndarray) -> np.ndarray:  # (N, Dz) -> (N, K): the torch scorer at the bundle's t, J, seed
        return tdsm_errors(model, schedule, stats, feats, class_text, s["num_noises"], s["timestep"], s["noise_seed"])

    z = np.ascontiguousarray(z, np.float32)
    ref = ref_fn(z)  # (N, K)
    got = scorer.errors(z)  # (N, K)
    report = {
        "precision": precision,
        "provider": scorer.providers[0],
        "samples": int(len(z)),
        "thresholds": {
            "fp32_max_rel_err": FP32_MAX_REL,
            "fp16_min_top1_agreement": FP16_MIN_TOP1,
            "text_max_rel_err": TEXT_MAX_REL,
        },
        "scorer": compare(got, ref),
    }
    failures = judge(precision, report["scorer"], "scorer")
    if labels is not None:
        report["scorer"].update(_accuracy(got, ref, labels, m))
    if encoder is not None and windows is not None and "encoder" in m.graphs:
        report["encoder"] = _verify_encoder(m, scorer, encoder, windows, ref_fn, providers, threads)
        failures += judge(precision, report["encoder"]["features"], "encoder features")
        failures += judge(precision, report["encoder"]["end_to_end"], "encoder → scorer")
    if TEXT_GRAPH in m.graphs:
        report["text"] = _verify_text(m, providers, threads)
        if report["text"]["max_rel_err"] > TEXT_MAX_REL:
            failures.append(
                f"text side: tables from the text graph + tables graph differ from tables.npz by max "
                f"relative error {report['text']['max_rel_err']:.3g} > {TEXT_MAX_REL:g}"
            )
    for plan in m.plans:
        if plan.get("graph", "scorer") == "scorer":
            stats_ = report.setdefault("plans", {})[plan["file"]] = _verify_plan(m, plan, scorer, z, ref)
            failures += judge(plan.get("precision", precision), stats_, plan["file"])
    report["passed"] = not failures
    if failures:
        report["failures"] = failures
        if raise_on_fail:
            raise ExportError("verification failed: " + "; ".join(failures) + f"\nreport: {report}")
    return report


def _accuracy(got: np.ndarray, ref: np.ndarray, labels: np.ndarray, m) -> dict:
    """Top-1 of bundle and reference over the samples whose label is one of the bundle's classes."""
    index = m.data["classes"].get("indices")
    if not index:
        return {}
    col = {int(g): k for k, g in enumerate(index)}
    keep = np.array([int(y) in col for y in labels])
    if not keep.any():
        return {}
    y = np.array([col[int(v)] for v in labels[keep]])
    return {
        "labelled": int(keep.sum()),
        "top1_bundle": float((got[keep].argmin(1) == y).mean()),
        "top1_reference": float((ref[keep].argmin(1) == y).mean()),
    }


def _verify_encoder(m, scorer: OrtBackend, encoder, windows: np.ndarray, ref_fn, providers, threads) -> dict:
    import torch

    from tdsm_edge.runtime.ort_backend import open_session

    windows = np.ascontiguousarray(windows, np.float32)
    sess = open_session(m, "encoder", threads, providers)
    name = sess.get_inputs()[0].name
    feats = np.concatenate([sess.run(None, {name: windows[i : i + 64]})[0] for i in range(0, len(windows), 64)])
    with torch.no_grad():
        ref = encoder.eval().features(torch.from_numpy(windows)).float().numpy()  # (N, Dz)
    return {
        "windows": int(len(windows)),
        "features": compare(feats, ref, per_element=False, top1=False),
        "end_to_end": compare(scorer.errors(feats), ref_fn(ref)),
    }


def _verify_text(m, providers, threads) -> dict:
    """The runtime's text side (tokenizer → text graph → tables graph) on the bundle's own class prompts vs
    tables.npz (the training-side features through `class_tables`): max |a − b| / max |b| per table."""
    from tdsm_edge.runtime.manifest import load_tables
    from tdsm_edge.runtime.text_encoder import OrtTextEncoder

    descriptions = m.data["classes"].get("descriptions")
    if descriptions is None and "description" in m.data["text"]["prompt_sets"]:
        raise ExportError("verify: the bundle ships the text side but records no class descriptions to re-encode")
    text = OrtTextEncoder(m, providers=providers, threads=threads)
    got, ref = text.class_tables(m.class_names, descriptions), load_tables(m)
    tables = {n: compare(got[n], ref[n], per_element=False, top1=False) for n in ref}
    return {
        "classes": len(m.class_names),
        "provider": text.text_session.get_providers()[0],
        "tables": tables,
        "max_rel_err": max(t["max_rel_err"] for t in tables.values()),
        "threshold": TEXT_MAX_REL,
    }


def _verify_plan(m, plan: dict, scorer: OrtBackend, z: np.ndarray, ref: np.ndarray) -> dict:
    """Run a TensorRT scorer plan (checked against this machine first) on the same feeds as the ONNX graph."""
    from .tensorrt_build import TrtEngine

    scorer.select(None)
    with TrtEngine() as eng:
        eng.load(
            m.path(plan["file"]), expected_record=plan, rebuild_cmd=m.rebuild_command, data=m.read_bytes(plan["file"])
        ).activate()
        out = [eng.infer(feed)["errors"][:n] for n, feed in scorer.feeds(z)]
    return compare(np.concatenate(out), ref)
