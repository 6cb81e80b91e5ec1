"""The project's error hierarchy: every error says what went wrong, why, and how to fix it."""

from __future__ import annotations


class TdsmError(Exception):
    """Root of every error raised on purpose by tdsm_edge."""


class ConfigError(TdsmError, ValueError):
    """A configuration value or file is invalid."""


class DataError(TdsmError, ValueError):
    """A dataset, split or feature file is missing or inconsistent."""


class CheckpointError(TdsmError):
    """A checkpoint is missing, incomplete or does not match the model."""


class BundleError(TdsmError):
    """An engine bundle is missing, corrupt or inconsistent."""


class EngineIncompatibleError(BundleError):
    """An engine plan was built for another TensorRT version or GPU."""


class ExportError(TdsmError):
    """An export (ONNX graph, engine build) failed or produced a graph that breaks its contract."""


class DeviceError(TdsmError, RuntimeError):
    """A CUDA call or an engine's execution on the GPU failed."""


class DriverMismatchError(ConfigError):
    """A GPU library (cuda-python) was built for a newer CUDA than the installed NVIDIA driver runs: not
    "no GPU" — the fix is the package version that matches the driver."""


class InputError(TdsmError, ValueError):
    """An input array has the wrong shape, dtype or values."""


class MissingDependencyError(TdsmError, ImportError):
    """An optional package needed for this feature is not installed."""


def installed(module: str) -> bool:
    """Whether `module` can be imported here: found on the path, not imported (a heavy package costs nothing).

    A name blocked on purpose (`sys.modules[name] = None`) or otherwise unfindable counts as not installed.
    """
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module in sys.modules without a __spec__
        return False


def require(module: str, package: str | None = None, extra: str | None = None):
    """Import `module` or raise MissingDependencyError naming the package and install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        pkg = package or module
        how = f'pip install "tdsm-edge[{extra}]"' if extra else f"pip install {pkg}"
        raise MissingDependencyError(
            f"{module!r} is not installed, and this feature needs it. Install it with: {how}"
        ) from e
