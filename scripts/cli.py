"""``vidfix`` console command: dispatches ``vidfix <command> ...`` to ``vidfix.scripts.<command>.main``; the
command line's one error boundary.

Each command module exposes ``main(argv: list[str] | None = None) -> int`` (wrapped by :func:`command`) and a
one-line ``SUMMARY``, and also runs as a plain script (``python scripts/bench.py corrector``). Command modules
import only the standard library at import time, so ``vidfix --help`` and every ``--help`` start fast.

Exit codes: 0 done; 1 the work failed (a chunk went NaN, a process failed, damaged files found by ``vidfix
verify``, the disk filled up); 2 usage errors (bad options or values, missing or unreadable input files, an
output folder that holds another run or is being written by another process); 130 interrupted. Every error
is reported as one line (``vidfix <command>: error: ...``), warnings too; set ``VIDFIX_DEBUG=1`` to get
Python tracebacks instead.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["COMMANDS", "Main", "command", "main", "run_command"]

# command name -> module under vidfix.scripts
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "generate": "generate",
    "verify": "verify",
    "calibrate": "calibrate",
    "drift": "drift",
    "bench": "bench",
    "train-reference": "train_reference",
    "eval-reference": "eval_reference",
    "train-judge": "train_judge",
}

_EPILOG = """examples:
  vidfix demo                                   # offline demo on the shipped reference model
  vidfix generate --frames 128 --seeds 0-7 --out runs/plain
  vidfix verify runs/plain                      # every chunk and file against its checksum
  vidfix drift my_video.mp4 --json drift.json --plot drift.png
  vidfix bench startup                          # start-up time of every command
run `vidfix <command> --help` for each command's options."""

# Errors the user can fix by changing the command (exit 2); the work itself failing is exit 1.
_USAGE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FileExistsError,
)


def _exit_code(err: BaseException) -> int | None:
    """The exit code of a reported error, or None for an unexpected one (a bug: re-raised with its traceback)."""
    if isinstance(err, ArithmeticError | MemoryError):  # NaN/inf chunks (FloatingPointError), out of memory
        return 1
    if isinstance(err, _USAGE_ERRORS):
        return 2
    if isinstance(err, OSError):  # disk full, I/O errors
        return 1
    from vidfix.pipelines.multiprocess import ProcessError

    if isinstance(err, ProcessError):
        return 1
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, torch.cuda.OutOfMemoryError):
        return 1
    return None


def _one_line_warnings(prog: str) -> Callable[..., None]:
    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    return show


def run_command(prog: str, fn: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run ``fn(argv)`` inside the error boundary: errors and warnings become one line on stderr, and exit codes
    follow the module docstring. ``--help`` (``SystemExit(0)``) passes through."""
    debug = os.environ.get("VIDFIX_DEBUG", "") not in ("", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.showwarning = _one_line_warnings(prog)
        try:
            return int(fn(argv) or 0)
        except KeyboardInterrupt:
            print(
                f"{prog}: interrupted (finished work is kept; rerun with --resume where it applies)",
                file=sys.stderr,
            )
            return 130
        except Exception as err:
            code = _exit_code(err)
            if code is None or debug:
                raise
            text = str(err) or type(err).__name__
            print(f"{prog}: error: {text}", file=sys.stderr)
            return code


class Main(Protocol):
    """A command's entry point: ``main(argv=None) -> exit code`` (``sys.argv[1:]`` when None)."""

    def __call__(self, argv: list[str] | None = None) -> int: ...


def command(prog: str) -> Callable[[Callable[[list[str]], int | None]], Main]:
    """Decorator: ``main(argv=None)`` of a command, run inside :func:`run_command` (``sys.argv`` when None)."""

    def wrap(fn: Callable[[list[str]], int | None]) -> Main:
        @functools.wraps(fn)
        def main(argv: list[str] | None = None) -> int:
            return run_command(prog, fn, list(sys.argv[1:] if argv is None else argv))

        return main

    return wrap


def _summary(module_name: str) -> str:
    try:
        module = importlib.import_module(f"vidfix.scripts.{module_name}")
    except ModuleNotFoundError:
        return "(not installed in this build)"
    return str(getattr(module, "SUMMARY", ""))


def _usage() -> str:
    lines = ["usage: vidfix <command> [options]", "", "commands:"]
    for name, module in COMMANDS.items():
        lines.append(f"  {name:<16} {_summary(module)}")
    return "\n".join([*lines, "", _EPILOG])


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(
            f"vidfix: error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    try:
        module = importlib.import_module(f"vidfix.scripts.{COMMANDS[name]}")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("vidfix.scripts"):
            print(f"vidfix: error: command {name!r} is not available in this build", file=sys.stderr)
            return 2
        raise
    # Commands wrapped by `command` have their own boundary; this one covers the others (it is idempotent).
    return run_command(f"vidfix {name}", lambda a: module.main(a), rest)


if __name__ == "__main__":
    sys.exit(main())
