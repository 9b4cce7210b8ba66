"""``vidfix verify RUN``: check a run folder without changing it: every chunk and final file against its checksum.

Thin: :func:`vidfix.pipelines.runs.verify_run` does the work. Exit 0 when every video is complete and intact, 1
when a file is damaged or missing or a video is unfinished (the lines say which), 2 when RUN holds no run.
"""

from __future__ import annotations

import json
import sys

from vidfix.scripts._common import Parser
from vidfix.scripts.cli import command

__all__ = ["SUMMARY", "build_parser", "main"]

SUMMARY = "check a generate run folder: every chunk and file against its checksum"

_EXAMPLES = """examples:
  vidfix verify runs/plain                 # every seed folder and the manifest
  vidfix verify runs/plain/seed_000003     # one video
  vidfix verify runs/plain --json          # one JSON object per folder, for programs

A damaged or missing file is named; `vidfix generate ... --resume` with the run's options generates it again
(bit-identical: chunks after the last intact one are re-generated, final files are rebuilt from the chunks)."""


def build_parser() -> Parser:
    p = Parser(
        prog="vidfix verify", description="Check a run folder written by `vidfix generate`.", epilog=_EXAMPLES
    )
    p.add_argument("run", metavar="RUN", help="output folder (with manifest.json) or one seed folder")
    p.add_argument("--json", action="store_true", help="print one JSON object per folder instead of lines")
    return p


@command("vidfix verify")
def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    from vidfix.pipelines.runs import verify_run

    reports = verify_run(ns.run)
    bad = 0
    for r in reports:
        unfinished = r.ok and not r.complete
        bad += int(not r.ok or unfinished)
        if ns.json:
            print(json.dumps({"folder": str(r.folder), "seed": r.seed, "complete": r.complete,
                              "chunks_ok": r.chunks_ok, "num_chunks": r.num_chunks, "problems": list(r.problems)}))  # fmt: skip
            continue
        if r.problems:
            print(f"DAMAGED {r.folder}: " + "; ".join(r.problems))
        elif unfinished:
            print(f"unfinished {r.folder}: {r.chunks_ok} of {r.num_chunks} chunks (continue with --resume)")
        else:
            print(f"ok {r.folder}" + (f" ({r.num_chunks} chunks)" if r.num_chunks else ""))
    if not ns.json:
        print(f"{len(reports) - bad} of {len(reports)} folder(s) complete and intact")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
