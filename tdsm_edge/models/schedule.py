"""DDPM forward-process maths (betas, ᾱ_t, noising, targets), kept apart from the network.

Matches the `diffusers.DDPMScheduler` configuration the published TDSM code uses (T = 50,
scaled-linear betas 0.00085 → 0.012). The tables are computed once in float64 numpy; tensors
handed to torch are float32. diffusers builds the same tables in float32 torch, so coefficients
agree to ~1e-7 relative.

Notation: `a = sqrt(ᾱ_t)`, `s = sqrt(1 - ᾱ_t)`.
  x_t = a·z + s·ε
  v   = a·ε − s·z
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import ScheduleConfig
from ..errors import ConfigError, InputError

PREDICTIONS = ("epsilon", "sample", "v_prediction")
BETA_SCHEDULES = ("scaled_linear", "linear")


def make_betas(cfg: ScheduleConfig) -> np.ndarray:
    """Beta table `(T,) float64` for `cfg.beta_schedule` ("scaled_linear" or "linear")."""
    T = cfg.num_steps
    if T < 1:
        raise ConfigError(f"schedule.num_steps must be >= 1, got {T}")
    if cfg.beta_schedule == "scaled_linear":
        # linear in sqrt(beta), then squared (Stable Diffusion / TDSM)
        return np.linspace(np.sqrt(cfg.beta_start), np.sqrt(cfg.beta_end), T, dtype=np.float64) ** 2
    if cfg.beta_schedule == "linear":
        return np.linspace(cfg.beta_start, cfg.beta_end, T, dtype=np.float64)
    raise ConfigError(f"schedule.beta_schedule {cfg.beta_schedule!r} is not supported; use one of {BETA_SCHEDULES}")


def diffusion_target(
    prediction: str, z: torch.Tensor, eps: torch.Tensor, a: torch.Tensor | None, s: torch.Tensor | None
) -> torch.Tensor:
    """What a denoiser of `prediction` type is trained to output, from its coefficients a, s.

    epsilon → ε; sample → z; v_prediction → v = a·ε − s·z. `z`, `eps`, `a`, `s` broadcast against
    each other (every forward pass — training, the reference loop, the folded scorer, the fast path,
    the pruning probe — computes its target here, with its own layout of z and ε).
    """
    if prediction == "epsilon":
        return eps
    if prediction == "sample":
        return z
    if prediction == "v_prediction":
        return a * eps - s * z
    raise ConfigError(f"schedule.prediction {prediction!r} is not supported; use one of {PREDICTIONS}")


class DDPMSchedule:
    """DDPM forward process for one `ScheduleConfig`.

    Attributes:
        num_steps: T.
        prediction: what the denoiser predicts: "epsilon" | "sample" | "v_prediction".
        betas: `(T,) float64` numpy.
        alphas_cumprod: ᾱ, `(T,) float64` numpy, strictly decreasing.

    Every method taking `t` accepts a python int or an integer tensor whose shape is a prefix of
    the data's shape (e.g. `t (N,)` with `z (N, Dz)` or `(N, 1, Dz)`); the coefficient is
    broadcast over the remaining dims.
    """

    def __init__(self, cfg: ScheduleConfig) -> None:
        if cfg.prediction not in PREDICTIONS:
            raise ConfigError(f"schedule.prediction {cfg.prediction!r} is not supported; use one of {PREDICTIONS}")
        self.cfg = cfg
        self.num_steps = cfg.num_steps
        self.prediction = cfg.prediction
        self.betas = make_betas(cfg)
        self.alphas_cumprod = np.cumprod(1.0 - self.betas)
        self._ab_cache: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ tables
    def alphas_cumprod_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """ᾱ as a `(T,) float32` tensor on `device` (cached per device; do not modify in place)."""
        key = str(torch.device(device)) if device is not None else "cpu"
        if key not in self._ab_cache:
            self._ab_cache[key] = torch.as_tensor(self.alphas_cumprod, dtype=torch.float32, device=device)
        return self._ab_cache[key]

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t as a python float (float64 precision), for manifests and constant folding."""
        self._check_int_t(t)
        return float(self.alphas_cumprod[t])

    def coefficients(self, t: int | torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(ᾱ_t), sqrt(1-ᾱ_t)) as float32 tensors broadcastable against `like`.

        `t` int → 0-d tensors; `t (N, ...)` integer tensor → shape `t.shape + (1,)*extra`.
        """
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            t = int(t)
            self._check_int_t(t)
            ab = torch.tensor(self.alphas_cumprod[t], dtype=torch.float32, device=like.device)
        elif not isinstance(t, torch.Tensor):
            raise InputError(f"timesteps must be an int or an integer tensor, got {type(t).__name__}")
        else:
            if t.dtype.is_floating_point or t.dtype == torch.bool:
                raise InputError(f"timesteps must be an integer tensor, got dtype {t.dtype}")
            if t.ndim > like.ndim or tuple(like.shape[: t.ndim]) != tuple(t.shape):
                raise InputError(
                    f"timesteps of shape {tuple(t.shape)} must be a prefix of the data shape {tuple(like.shape)}"
                )
            # range check on CPU only: on an accelerator it would force a host sync every step
            if t.device.type == "cpu" and t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_steps):
                raise InputError(f"timesteps must lie in [0, {self.num_steps}), got [{int(t.min())}, {int(t.max())}]")
            ab = self.alphas_cumprod_tensor(like.device)[t.long()]  # t.shape
            ab = ab.reshape(tuple(t.shape) + (1,) * (like.ndim - t.ndim))  # broadcastable to like
        a, s = ab.sqrt(), (1.0 - ab).sqrt()  # float32
        if like.dtype.is_floating_point and like.dtype != torch.float32:
            a, s = a.to(like.dtype), s.to(like.dtype)
        return a, s

    def sample_timesteps(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """`(n,) int64` timesteps uniform in [0, T), as in the published training step."""
        t = torch.randint(0, self.num_steps, (n,), generator=generator)  # (n,) on CPU
        return t.to(device) if device is not None else t

    # ------------------------------------------------------------------ forward process
    def add_noise(self, z: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t)·z + sqrt(1-ᾱ_t)·ε; `z`, `eps` same shape and float dtype."""
        a, s = self.coefficients(t, z)
        return a * z + s * eps

    def velocity(self, z: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """v = sqrt(ᾱ_t)·ε − sqrt(1-ᾱ_t)·z (the diffusers `get_velocity`)."""
        return diffusion_target("v_prediction", z, eps, *self.coefficients(t, z))

    def target(self, z: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """What the denoiser is trained to output for `self.prediction`.

        epsilon → ε; sample → z; v_prediction → v. Training and scoring both compare the model's
        output against this target (the published evaluation does the same), so scores are in the
        prediction type's own space. Use `to_epsilon` when an ε estimate is needed instead.
        """
        a, s = self.coefficients(t, z) if self.prediction == "v_prediction" else (None, None)  # ε, z need none
        return diffusion_target(self.prediction, z, eps, a, s)

    def to_epsilon(self, pred: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Convert a model output (of type `self.prediction`) into an ε estimate."""
        if self.prediction == "epsilon":
            return pred
        a, s = self.coefficients(t, x_t)
        if self.prediction == "sample":
            return (x_t - a * pred) / s
        return a * pred + s * x_t  # v: a·v + s·x_t = (a² + s²)·ε = ε

    def to_sample(self, pred: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Convert a model output (of type `self.prediction`) into a clean-sample (z) estimate."""
        if self.prediction == "sample":
            return pred
        a, s = self.coefficients(t, x_t)
        if self.prediction == "epsilon":
            return (x_t - s * pred) / a
        return a * x_t - s * pred  # v: a·x_t − s·v = (a² + s²)·z = z

    # ------------------------------------------------------------------ helpers
    def _check_int_t(self, t: int) -> None:
        if not 0 <= t < self.num_steps:
            raise InputError(f"timestep {t} must lie in [0, {self.num_steps})")

    def __repr__(self) -> str:
        c = self.cfg
        return (
            f"DDPMSchedule(T={c.num_steps}, {c.beta_schedule} {c.beta_start}→{c.beta_end}, prediction={c.prediction})"
        )
