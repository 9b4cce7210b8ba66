"""Kill ``vidfix generate`` (SIGKILL) at random moments, during chunk writes and during the .mp4 encode, and check
that ``--resume`` ends with a playable result bit-identical to an uninterrupted run (tensors and .mp4 bytes).

Regression: a kill during the mp4 encode left a 48-byte ``video.mp4`` that ``--resume`` never repaired while
reporting success.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch
from _tiny_models import TinyChunkDenoiser
from vidfix.pipelines import load_video
from vidfix.pipelines.runs import load_tensors
from vidfix.scripts import cli
from vidfix.scripts import generate as gen

TESTS = Path(__file__).resolve().parent
SEEDS = (0, 1)


def frames_in(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def killed_run(moment: str, n: int, argv: list[str]) -> None:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                        "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [sys.executable, str(TESTS / "_kill_generate.py"), moment, str(n), "--", *argv]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, f"not killed at {moment} {n}: rc {done.returncode}\n{done.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("fuzz_seed", [0])
def test_kills_during_chunk_writes_and_the_mp4_encode_resume_bit_identically(tmp_path: Path, fuzz_seed: int) -> None:
    rng = random.Random(fuzz_seed)
    model = tmp_path / "model"
    TinyChunkDenoiser().save_pretrained(model)
    common = ["--model", str(model), "--model-class", "_tiny_models:TinyChunkDenoiser", "--frames", "16",
              "--steps", "2", "--scheduler", "unipc", "--seeds", "0-1", "--no-progress", "--threads", "1"]  # fmt: skip
    whole, out = tmp_path / "whole", tmp_path / "killed"
    assert gen.main([*common, "--out", str(whole)]) == 0  # 2 seeds x 4 chunks, uninterrupted

    # Each run resumes the last one and is killed again; the moments are drawn per fuzz seed.
    moments = [("chunk", rng.randint(1, 4)), ("rename", rng.randint(1, 3)), ("mp4", 1), ("video", 1)]
    for i, (moment, n) in enumerate(moments):
        killed_run(moment, n, [*common, "--out", str(out), *(["--resume"] if i else [])])
        for s in SEEDS:
            folder = out / f"seed_{s:06d}"
            mp4 = folder / "video.mp4"
            assert not mp4.exists() or mp4.read_bytes() == (whole / mp4.relative_to(out)).read_bytes(), (
                f"a partial video.mp4 under its real name after a kill at {moment} {n}"
            )
            for chunk in (folder / "chunks").glob("chunk_*.safetensors"):  # whole files only, under real names
                got, want = load_tensors(chunk), load_tensors(whole / chunk.relative_to(out))
                assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert list(out.rglob(".*.tmp*")), "the kills left no temporary file: they did not hit a write"

    assert gen.main([*common, "--out", str(out), "--resume"]) == 0
    for s in SEEDS:
        a, b = whole / f"seed_{s:06d}", out / f"seed_{s:06d}"
        assert torch.equal(load_video(a), load_video(b))
        assert (a / "video.mp4").read_bytes() == (b / "video.mp4").read_bytes()
        assert frames_in(b / "video.mp4") == 16  # playable
        assert (a / "drift.json").read_bytes() == (b / "drift.json").read_bytes()
    assert not list(out.rglob(".*.tmp*")), "temporary files left after the resume"
    assert cli.main(["verify", str(out)]) == 0
