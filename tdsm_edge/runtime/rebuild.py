"""The `python -m export.build_engine` command line that (re)builds a bundle: made here and only here.

    build_command(run="runs/demo/ru5/seed1", out="engines/demo", precision="fp16", backend="onnxruntime")
    with_options(manifest.rebuild_command, backend="tensorrt")   # the same build, plans for this device

The export CLI records the command of each build in the manifest (`build.command`); the bundle writer
makes one for a library-built bundle; the runtime names it, with an option changed where needed
(`--backend tensorrt`, `--text-encoder`), in the errors that tell how to rebuild. `OPTIONS` spells
the CLI's options (export/build_engine.py `build_parser`; a test keeps them equal) in the order a
command names them; a value of None leaves the option out, so the CLI's default applies.

Standard library only: the lean runtime imports it.
"""

from __future__ import annotations

import shlex
from typing import Any

PROGRAM = ("python", "-m", "export.build_engine")
DEFAULT_REBUILD = shlex.join(PROGRAM)  # named in errors when a bundle records no command

VALUE, VALUES, SWITCH = "value", "values", "switch"  # `--x V`, `--x V1 V2 …` (nargs "+"), `--x` / `--no-x`
# argparse dest → (flag, kind), in the order a command names them
OPTIONS: dict[str, tuple[str, str]] = {
    "run": ("--run", VALUE),
    "prefer_student": ("--prefer-student", VALUE),
    "out": ("--out", VALUE),
    "precision": ("--precision", VALUE),
    "backend": ("--backend", VALUE),
    "batch": ("--batch", VALUE),
    "dynamic": ("--dynamic", SWITCH),
    "noises": ("--noises", VALUE),
    "timestep": ("--timestep", VALUE),
    "classes": ("--classes", VALUES),
    "classes_file": ("--classes-file", VALUE),
    "workspace": ("--workspace", VALUE),
    "timing_cache": ("--timing-cache", VALUE),
    "trt_contexts": ("--trt-contexts", VALUE),
    "verify": ("--verify", SWITCH),
    "open_set_accept": ("--open-set-accept", VALUE),
    "torch_weights": ("--torch-weights", SWITCH),
    "triton_repo": ("--triton-repo", VALUE),
    "sign_key": ("--sign-key", VALUE),
    "text_encoder": ("--text-encoder", SWITCH),
    "tradeoff": ("--tradeoff", SWITCH),
    "log_level": ("--log-level", VALUE),
}


def build_command(**options: Any) -> str:
    """The build_engine command line for `options` (argparse dest names, see `OPTIONS`), shell-quoted.

    A value of None leaves its option out; a switch is True (`--dynamic`) or False (`--no-dynamic`);
    `classes` is a sequence of names; any other value is written as `str(value)`.
    """
    return shlex.join([*PROGRAM, *_argv(options)])


def command_options(command: str) -> dict[str, Any] | None:
    """The options of a build_engine command line (values as strings, switches as bools), or None when
    `command` is not one that `OPTIONS` can read (another program, an unknown or abbreviated option)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if tuple(argv[: len(PROGRAM)]) != PROGRAM:
        return None
    flags = {flag: (dest, kind) for dest, (flag, kind) in OPTIONS.items()}
    flags.update({"--no-" + flag[2:]: (dest, kind) for dest, (flag, kind) in OPTIONS.items() if kind == SWITCH})
    options: dict[str, Any] = {}
    rest = argv[len(PROGRAM) :]
    while rest:
        flag, eq, inline = rest.pop(0).partition("=")
        if flag not in flags:
            return None
        dest, kind = flags[flag]
        if kind == SWITCH:
            if eq:
                return None
            options[dest] = not flag.startswith("--no-")
        elif eq:
            options[dest] = [inline] if kind == VALUES else inline
        elif kind == VALUE:
            if not rest:
                return None
            options[dest] = rest.pop(0)
        else:
            values = []
            while rest and not rest[0].startswith("-"):
                values.append(rest.pop(0))
            if not values:
                return None
            options[dest] = values
    return options


def with_options(command: str, **changes: Any) -> str:
    """`command` (a bundle's recorded build command) with `changes` made, e.g. `backend="tensorrt"`.

    A command `command_options` cannot read (another launcher, an abbreviated or unknown option) keeps
    its own words, minus any it holds of the changed options (`--backend X`, `--x` / `--no-x`), and
    gets the changed options appended, so the message still says exactly what to run.
    """
    options = command_options(command)
    if options is not None:
        return build_command(**{**options, **changes})
    try:
        argv = shlex.split(command)
    except ValueError:  # unbalanced quotes: leave it as written
        return f"{command} {shlex.join(_argv(changes))}"
    return shlex.join([*_without(argv, changes), *_argv(changes)])


def _without(argv: list[str], dests) -> list[str]:
    """`argv` minus the tokens of the options `dests` (a flag, `--flag=v`, its values, `--no-flag`)."""
    drop = {OPTIONS[d][0]: OPTIONS[d][1] for d in dests if d in OPTIONS}
    drop.update({"--no-" + f[2:]: SWITCH for f, kind in list(drop.items()) if kind == SWITCH})
    out, i = [], 0
    while i < len(argv):
        flag, eq, _ = argv[i].partition("=")
        kind = drop.get(flag)
        i += 1
        if kind is None:
            out.append(argv[i - 1])
        elif kind == VALUE and not eq:
            i += 1  # its value
        elif kind == VALUES and not eq:
            while i < len(argv) and not argv[i].startswith("--"):
                i += 1
    return out


def _argv(options: dict[str, Any]) -> list[str]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"build_engine has no options {unknown}; known: {list(OPTIONS)}")
    argv: list[str] = []
    for dest, (flag, kind) in OPTIONS.items():
        value = options.get(dest)
        if value is None:
            continue
        if kind == SWITCH:
            argv.append(flag if value else "--no-" + flag[2:])
        elif kind == VALUES:
            if isinstance(value, str):
                raise TypeError(f"{dest} takes a sequence of values, got the string {value!r}")
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
