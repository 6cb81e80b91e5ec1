"""The PyTorch backend: the bundle's reference weights run by the folded scorer, on CPU or CUDA.

    scorer = TorchBackend(manifest, device="auto")     # reference/ weights + tables.npz
    errors = scorer.errors(z)                          # (B, Dz) float -> (B, K) float32, active classes

The reference of the other backends (it is the model the graphs were exported from) and the fallback
where neither TensorRT nor ONNX Runtime is installed. It reads the weights the bundle stores under
`reference/` (written by `export.bundle.write_bundle`, hashed in the manifest like every file), runs
`tdsm_edge.models.folded.FoldedScorer` in the bundle's precision (fp16 only on CUDA: CPU has no
fast fp16 kernels, so a fp16 bundle runs fp32 there, recorded in `.precision`) and the Shift-GCN
encoder. On CUDA with `cuda_graph=True` each (B, K) call shape is captured once in a CUDA graph and
replayed. torch is imported here, so this module is only imported when the backend is chosen.
"""

from __future__ import annotations

import logging
import threading
from io import BytesIO

import numpy as np

from tdsm_edge.errors import ConfigError, require

from .batching import batches, features, row_limit, samples_per_call, windows
from .class_set import ClassSet, Snapshot
from .manifest import Manifest, load_tables

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> str:
    """ "auto" → "cuda" when a CUDA GPU is visible, else "cpu"; a named device is checked."""
    torch = require("torch", extra="train")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but this torch sees no CUDA GPU; use device='cpu' or 'auto'")
    try:
        torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"device={device!r} is not a torch device ({e}); use 'auto', 'cpu' or 'cuda:N'") from e
    return str(device)


class TorchBackend:
    """The folded scorer over the bundle's reference weights (see the module docstring).

    Args:
        manifest: a loaded, checked bundle manifest with a `reference` section.
        device: "auto", "cpu", "cuda", "cuda:N".
        threads: torch intra-op threads on CPU (default: leave torch's setting).
        cuda_graph: on CUDA, capture each (B, K) shape in a CUDA graph.
        fast: run `tdsm_edge.fastpath.scorer.FastScorer` (fused Triton kernels, SDPA, fp32 islands) instead of
            the plain folded scorer; None = on CUDA only. On the CPU it uses the kernels' torch fallbacks.
        max_rows: cut a call into chunks of at most this many scoring rows (B·K·J, at least one sample
            each); None = `batching.CPU_MAX_ROWS` on the CPU (the activations stay in cache), no limit on
            CUDA (one call, one graph replay).
    """

    def __init__(
        self,
        manifest: Manifest,
        device: str = "auto",
        threads: int | None = None,
        cuda_graph: bool = False,
        fast: bool | None = None,
        max_rows: int | None = None,
    ) -> None:
        torch = require("torch", extra="train")
        from tdsm_edge.data.features import FeatureStats
        from tdsm_edge.models.folded import FoldedScorer

        self.manifest = manifest
        ref = manifest.data.get("reference")
        if not ref:
            raise ConfigError(
                f"the bundle {manifest.root} has no reference weights for the torch backend; rebuild "
                f"it without --no-torch-weights: {manifest.rebuild_command}"
            )
        self.torch_device = resolve_device(device)
        if threads and self.torch_device == "cpu":
            torch.set_num_threads(int(threads))
        on_gpu = self.torch_device.startswith("cuda")
        self.max_rows = row_limit(max_rows, on_gpu)
        self.precision = manifest.precision if on_gpu else "fp32"
        if self.precision != manifest.precision:
            log.info("torch backend on CPU runs the %s bundle in fp32 (no fast fp16 CPU kernels)", manifest.precision)
        model, schedule = _denoiser(manifest, ref)
        s = manifest.data["scoring"]
        noises = torch.from_numpy(_npy(manifest, ref["noise_bank"]))  # (J, Dz)
        self.num_noises = int(s["num_noises"])
        if noises.shape[0] != self.num_noises:
            raise manifest.error(
                "reference/noise_bank.npy",
                f"it holds {noises.shape[0]} noises, the manifest's scoring section says J={s['num_noises']}",
            )
        stats = FeatureStats(_npy(manifest, ref["feature_mean"]), _npy(manifest, ref["feature_std"]))
        self.fast = on_gpu if fast is None else bool(fast)  # both variants (the student: skeleton token alone)
        # the fast path takes a fp32 folded scorer and fp32 tables and casts them itself
        folded_precision = "fp32" if self.fast else self.precision
        folded = FoldedScorer(model, schedule, noises, int(s["timestep"]), stats, folded_precision).eval()
        dtypes = {n: str(d).replace("torch.", "") for n, d in folded.table_dtypes().items()}
        self.folded = self._fast = None
        if self.fast:  # the fast path copies the weights to the device in its own layout: one copy there
            from tdsm_edge.fastpath.scorer import FastScorer

            self._fast = FastScorer(
                folded, precision=self.precision, device=self.torch_device, cuda_graphs=bool(cuda_graph) and on_gpu
            )
        else:
            self.folded = folded.to(self.torch_device)
        self.class_set = ClassSet(manifest.class_names, load_tables(manifest), dtypes)
        self.z_dim = int(model.cfg.z_dim)
        self.cuda_graph = bool(cuda_graph) and on_gpu and not self.fast  # the fast path keeps its own graphs
        self._device_tables: tuple[int, dict] | None = None  # (snapshot version, tables on the device)
        self._graphs: dict[tuple[int, int, int], tuple] = {}  # (B, K, version) -> (graph, z buffer, output)
        self._lock = threading.Lock()  # one call at a time: shared device buffers and graphs

    @property
    def device(self) -> str:
        name = self.torch_device
        if name.startswith("cuda"):
            import torch

            name += f" ({torch.cuda.get_device_name(torch.device(name))})"
        graphs = self.cuda_graph or (self._fast is not None and self._fast.graphs is not None)
        return (
            f"torch {name}, {self.precision}"
            + (", fast path" if self.fast else "")
            + (", CUDA graphs" if graphs else "")
        )

    def errors(self, z: np.ndarray, snap: Snapshot | None = None) -> np.ndarray:
        """`z (B, Dz)` float raw features → `(B, K) float32` errors over the classes of `snap` (default: the
        active classes now)."""
        import torch

        z = features(z, self.z_dim)
        snap = snap or self.class_set.snapshot()
        if len(z) == 0:
            return np.zeros((0, len(snap.names)), np.float32)
        per_call = samples_per_call(self.max_rows, len(snap.names) * self.num_noises, 1, len(z))
        with self._lock, torch.inference_mode():
            tables = self._tables(snap)
            outs = [self._call(torch.from_numpy(part), tables, snap.version) for _, part in batches(z, 1, per_call)]
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _call(self, zt, tables: dict, version: int) -> np.ndarray:
        """One scorer call on one chunk `(n, Dz)` fp32 (CPU tensor) → `(n, K)` float32."""
        if self._fast is not None:
            out = self._fast(zt, tables)
        elif self.cuda_graph:
            out = self._replay(zt, tables, version)
        else:
            out = self.folded(zt.to(self.torch_device), **tables)
        return out.float().cpu().numpy()

    def _tables(self, snap: Snapshot) -> dict:
        """The snapshot's tables on the device, uploaded once per class-set version."""
        import torch

        if self._device_tables is None or self._device_tables[0] != snap.version:
            self._device_tables = (
                snap.version,
                {n: torch.from_numpy(np.array(t)).to(self.torch_device) for n, t in snap.tables.items()},
            )
            self._graphs = {k: v for k, v in self._graphs.items() if k[2] == snap.version}
        return self._device_tables[1]

    def _replay(self, z, tables: dict, version: int):
        """Run through a CUDA graph captured for this (B, K) shape (captured on first use)."""
        key = (z.shape[0], next(iter(tables.values())).shape[0], version)
        if key not in self._graphs:
            from tdsm_edge.fastpath.graphs import capture_graph

            static_z = z.to(self.torch_device)  # the tables are static already: uploaded once per version
            graph, out = capture_graph(lambda: self.folded(static_z, **tables), static_z.device)
            self._graphs[key] = (graph, static_z, out)
        graph, static_z, out = self._graphs[key]
        static_z.copy_(z, non_blocking=False)
        graph.replay()
        return out.clone()


class TorchEncoder:
    """The bundle's Shift-GCN encoder (reference weights): `(B, 3, T, V, M)` windows → `(B, Dz)` features."""

    def __init__(self, manifest: Manifest, device: str = "cpu") -> None:
        torch = require("torch", extra="train")
        from tdsm_edge.models.folders import encoder_from_state

        ref = manifest.data.get("reference") or {}
        if not ref.get("encoder"):
            raise ConfigError(
                f"the bundle {manifest.root} has no reference encoder weights; rebuild it: {manifest.rebuild_command}"
            )
        model = _checked(
            manifest, ref["encoder"], lambda state, meta, where: encoder_from_state(state, meta, where, device, fix="")
        )
        self.device = device
        self.model = model.requires_grad_(False)
        x = manifest.io.graphs["encoder"].inputs[0] if "encoder" in manifest.io.graphs else None
        self.window_shape = (
            tuple(int(d) for d in x.dims[1:])
            if x is not None
            else (3, int(manifest.data["skeleton"]["preprocess"]["frames"]), model.num_joints, model.num_person)
        )
        self._torch = torch

    def features(self, x: np.ndarray) -> np.ndarray:
        """`x (B, 3, T, V, M)` preprocessed windows → `(B, Dz) float32` raw features."""
        x = windows(x, self.window_shape)
        with self._torch.inference_mode():
            return self.model.features(self._torch.from_numpy(x).to(self.device)).float().cpu().numpy()


def _npy(manifest: Manifest, rel: str) -> np.ndarray:
    try:
        return np.load(BytesIO(manifest.read_bytes(rel)), allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as e:
        raise manifest.error(f"the reference file {rel}", f"unreadable ({e})") from e


def _checked(manifest: Manifest, folder: str, build):
    """`build(state, meta, where)` of a reference weights folder, read through the manifest (sha256 checked);
    a malformed checkpoint is a BundleError naming the folder."""
    from tdsm_edge.checkpoint import module_from_bytes
    from tdsm_edge.errors import CheckpointError

    try:
        state, meta = module_from_bytes(
            manifest.read_bytes(f"{folder}/model.safetensors"), manifest.read_bytes(f"{folder}/config.json"), folder
        )
        return build(state, meta, f"{manifest.root}/{folder}")
    except CheckpointError as e:
        raise manifest.error(folder, str(e)) from e


def _denoiser(manifest: Manifest, ref: dict):
    """(TDSMDenoiser with the reference weights, DDPMSchedule) from the manifest's model section."""
    from tdsm_edge.config import DenoiserConfig, ScheduleConfig, section_from_dict
    from tdsm_edge.models.folders import denoiser_from_state
    from tdsm_edge.models.schedule import DDPMSchedule

    model_info = manifest.data["model"]
    try:
        cfg = section_from_dict(DenoiserConfig, model_info["denoiser"], "manifest model.denoiser")
        sched = DDPMSchedule(section_from_dict(ScheduleConfig, model_info["schedule"], "manifest model.schedule"))
    except (KeyError, TypeError, ValueError) as e:  # ConfigError is a ValueError
        raise manifest.error("the model section", f"cannot rebuild the denoiser config from it ({e})") from e
    # the config comes from the manifest (sealed with the bundle), not from reference/denoiser/config.json
    model = _checked(
        manifest, ref["denoiser"], lambda state, _meta, where: denoiser_from_state(state, cfg, where, fix="")
    )
    return model, sched
