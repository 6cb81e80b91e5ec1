"""PNG figures without pyplot: one place for the project's plots (evaluation, trade-off grid, benchmark report).

    fig = new_figure(6.4, 4.4)                 # a matplotlib Figure on an Agg canvas (inches)
    ax = fig.add_subplot(1, 1, 1); ...
    save_png(fig, "runs/demo/plots/sweep.png")  # atomic: a reader never sees half a file

matplotlib is imported lazily and used through the object-oriented `Figure` API with the Agg canvas,
so plotting never touches pyplot's global state or the user's chosen backend.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .errors import require

log = logging.getLogger(__name__)


def new_figure(width: float, height: float, dpi: float | None = 110) -> Any:
    """A matplotlib Figure of `width` × `height` inches bound to an Agg canvas (no pyplot);
    `dpi` None = matplotlib's default. MissingDependencyError naming the install command when
    matplotlib is absent."""
    require("matplotlib", extra="train")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | Path) -> Path:
    """Write `fig` as PNG to `path` atomically (temp file in the same folder, then rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("wrote %s", path)
    return path
