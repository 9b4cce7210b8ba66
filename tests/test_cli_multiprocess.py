"""``vidfix generate`` under ``torchrun`` with 2 CPU processes (gloo): seeds split, one manifest, same bits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _tiny_models import TinyChunkDenoiser
from vidfix.pipelines import load_video
from vidfix.pipelines.multiprocess import batches_of
from vidfix.scripts import generate as gen

TESTS = Path(__file__).resolve().parent


def test_batches_of() -> None:
    assert batches_of([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    with pytest.raises(ValueError, match="batch size"):
        batches_of([1], 0)


@pytest.mark.slow
def test_two_processes_give_the_same_videos_as_one(tmp_path: Path) -> None:
    model = tmp_path / "model"
    TinyChunkDenoiser().save_pretrained(model)
    common = [
        "--model", str(model), "--model-class", "_tiny_models:TinyChunkDenoiser", "--frames", "10", "--steps", "2",
        "--seeds", "0-4", "--batch-size", "2", "--corrector", "dcw", "--low", "0.02", "--scheduler", "unipc",
        "--no-progress", "--no-mp4",
    ]  # fmt: skip
    assert gen.main([*common, "--out", str(tmp_path / "one")]) == 0
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(TESTS.parent / "scripts" / "generate.py"), *common, "--out", str(tmp_path / "two")]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["processes"] == 2
    assert [v["seed"] for v in manifest["videos"]] == [0, 1, 2, 3, 4]
    assert {v["process"] for v in manifest["videos"]} == {0, 1}  # both processes made videos
    for seed in range(5):
        one = load_video(tmp_path / "one" / f"seed_{seed:06d}")
        two = load_video(tmp_path / "two" / f"seed_{seed:06d}")
        assert torch.equal(one, two), seed


@pytest.mark.slow
def test_killed_process_resumes_bit_identically(tmp_path: Path) -> None:
    """A real kill (SIGKILL mid-run), not an exception: the resumed video equals an uninterrupted one."""
    import signal
    import time

    model = tmp_path / "model"
    TinyChunkDenoiser().save_pretrained(model)
    common = [
        "--model", str(model), "--model-class", "_tiny_models:TinyChunkDenoiser", "--frames", "400", "--steps", "4",
        "--scheduler", "unipc", "--context-noise", "20", "--overlap", "1", "--no-progress", "--no-mp4", "--threads", "1",
    ]  # fmt: skip
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    script = str(TESTS.parent / "scripts" / "generate.py")
    proc = subprocess.Popen([sys.executable, script, *common, "--out", str(tmp_path / "killed")], env=env)
    chunks = tmp_path / "killed" / "seed_000000" / "chunks"
    deadline = time.monotonic() + 240
    while (
        not (chunks / "chunk_0005.safetensors").exists()
        and time.monotonic() < deadline
        and proc.poll() is None
    ):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (chunks.parent / "video.safetensors").exists(), "the run finished before it could be killed"
    assert gen.main([*common, "--out", str(tmp_path / "killed"), "--resume"]) == 0
    assert gen.main([*common, "--out", str(tmp_path / "whole")]) == 0
    assert torch.equal(
        load_video(tmp_path / "killed" / "seed_000000"), load_video(tmp_path / "whole" / "seed_000000")
    )
