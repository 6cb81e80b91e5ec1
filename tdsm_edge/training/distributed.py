"""Data-parallel helpers (PyTorch DDP). Launch with `torchrun --nproc_per_node N -m tdsm_edge.train ...`.

On CPU the gloo backend is used, on GPUs nccl. Every rank draws the SAME global batch from the same
seeded generator and keeps its own contiguous shard, so a DDP step equals a single-process step on
the global batch (gradients are averaged over equal shards).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu") -> DistInfo:
    """Initialise the process group if launched by torchrun (WORLD_SIZE > 1); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)  # else every rank's NCCL collectives land on cuda:0
    if not dist.is_initialized():
        # other ranks wait at barriers while rank 0 trains the encoder and evaluates: allow hours
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo", timeout=timedelta(hours=12))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def wrap_ddp(model, device: str):
    """DistributedDataParallel around `model`. The last block's text-stream projection and MLP feed
    nothing the loss reads, so they get no gradient: DDP must be told to expect unused parameters."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DDP(model, device_ids=ids, find_unused_parameters=True)


def shard(global_batch: int, info: DistInfo) -> slice:
    """This rank's contiguous slice of a global batch; the batch must divide evenly."""
    if global_batch % info.world_size:
        from ..errors import ConfigError

        raise ConfigError(
            f"train.batch_size ({global_batch}) must be divisible by the number of "
            f"processes ({info.world_size}); change one of them."
        )
    per = global_batch // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


def resolve_device(name: str) -> str:
    """ "auto" -> "cuda" when a GPU is visible (the local rank's under DDP), else "cpu"."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return "cpu"
    from ..errors import ConfigError

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but no CUDA GPU is visible; use 'auto' or 'cpu'.")
    try:
        torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device {name!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from e
    if torch.device(name).type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported here; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return name
