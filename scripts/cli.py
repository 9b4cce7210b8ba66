"""``vidfix`` console command: dispatches ``vidfix <command> ...`` to ``vidfix.scripts.<command>.main``.

Each command module exposes ``main(argv: list[str] | None = None) -> int`` and a one-line ``SUMMARY``,
and also runs as a plain script (``python scripts/bench.py corrector``).
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

# command name -> module under vidfix.scripts
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "generate": "generate",
    "calibrate": "calibrate",
    "drift": "drift",
    "bench": "bench",
    "train-reference": "train_reference",
    "eval-reference": "eval_reference",
    "train-judge": "train_judge",
}

_EPILOG = """examples:
  vidfix demo                                   # offline demo on the shipped reference model
  vidfix drift my_video.mp4 --json drift.json --plot drift.png
  vidfix bench corrector                        # corrector speed, written to BENCHMARKS.md
run `vidfix <command> --help` for each command's options."""


def _summary(module_name: str) -> str:
    try:
        module = importlib.import_module(f"vidfix.scripts.{module_name}")
    except ModuleNotFoundError:
        return "(not installed in this build)"
    return str(getattr(module, "SUMMARY", ""))


def _usage() -> str:
    lines = ["usage: vidfix <command> [options]", "", "commands:"]
    for name, module in COMMANDS.items():
        lines.append(f"  {name:<10} {_summary(module)}")
    return "\n".join([*lines, "", _EPILOG])


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"vidfix: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"vidfix.scripts.{COMMANDS[name]}")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("vidfix.scripts"):
            print(f"vidfix: command {name!r} is not available in this build", file=sys.stderr)
            return 2
        raise
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
