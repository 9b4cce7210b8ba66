"""Run ``vidfix generate`` and SIGKILL it at a chosen moment: a helper of the kill tests (tests/test_cli_fuzz.py).

    python tests/_kill_generate.py MOMENT N -- <vidfix generate arguments>

MOMENT, counted per process (the N-th event of its kind):
    chunk   while writing a chunk file: the file is written to its temporary name, cut to half, then the kill
    rename  right after a chunk file is renamed into place, before run.json records its checksum
    mp4     during an .mp4 encode: after the encoder has taken the first frames
    video   while writing video.safetensors (cut to half under its temporary name)

The process kills itself with SIGKILL (no cleanup runs, as with ``kill -9`` or the out-of-memory killer).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    moment, n = sys.argv[1], int(sys.argv[2])
    assert sys.argv[3] == "--", "usage: _kill_generate.py MOMENT N -- ARGS"
    argv = sys.argv[4:]
    import vidfix.metrics.io as video_io
    import vidfix.pipelines.runs as runs
    from vidfix.scripts import generate

    count = 0
    real_save, real_replace, real_write = runs.save_file, os.replace, video_io.write_video

    def save_file(tensors: Any, filename: str, metadata: Any = None) -> None:
        nonlocal count
        real_save(tensors, filename, metadata=metadata)
        kind = "chunk" if ".chunk_" in filename else "video" if ".video.safetensors" in filename else None
        if kind == moment:
            count += 1
            if count == n:
                os.truncate(filename, os.path.getsize(filename) // 2)
                die()

    def replace(src: Any, dst: Any) -> None:
        nonlocal count
        real_replace(src, dst)
        if moment == "rename" and os.path.basename(str(dst)).startswith("chunk_"):
            count += 1
            if count == n:
                die()

    def write_video(path: Any, frames: Any, **kwargs: Any) -> Any:
        nonlocal count
        if moment == "mp4":
            count += 1
            if count == n:

                def dying(batches: Any) -> Any:
                    yield next(batches)
                    die()  # the encoder asks for more frames: it has encoded the first ones

                frames = dying(iter(frames))
        return real_write(path, frames, **kwargs)

    runs.save_file = save_file  # type: ignore[assignment]
    os.replace = replace  # type: ignore[assignment]
    video_io.write_video = write_video  # type: ignore[assignment]
    sys.exit(generate.main(argv))


if __name__ == "__main__":
    main()
