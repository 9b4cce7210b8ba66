"""Resumable runs: checkpoint per chunk, bit-identical resume after a kill, refusals, non-finite chunks on disk."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from _tiny_models import Spy, TinyChunkDenoiser
from diffusers import UniPCMultistepScheduler
from vidfix.pipelines import (
    NonFiniteChunkError,
    RunFolderError,
    SamplerConfig,
    generate_videos,
    load_video,
    sample_video,
    seed_folder,
)

from vidfix import DCW, DriftTracker

CFG = SamplerConfig(
    num_frames=18,
    chunk_frames=4,
    context_frames=2,
    overlap=1,
    channels=3,
    height=8,
    width=8,
    num_steps=3,
    context_noise=20.0,
    anchor=0.5,
)
DCW3 = DCW(low=0.03, spatial=0.01, temporal=-0.01)


def unipc() -> UniPCMultistepScheduler:  # multistep: its history must not leak across chunks or resumes
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True)


@pytest.fixture(scope="module")
def model() -> TinyChunkDenoiser:
    return TinyChunkDenoiser().eval()


class Kill(Exception):
    pass


def kill_at(chunk: int):
    def callback(c: torch.Tensor, *, index: int, restored: bool, **_: object) -> None:
        if index == chunk and not restored:
            raise Kill(f"simulated kill after chunk {index}")

    return callback


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_after_kill_is_bit_identical(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    seeds = [4, 11]
    whole = generate_videos(
        model, unipc(), CFG, seeds, out_dir=tmp_path / "whole", corrector=DCW3, batch_size=2
    )
    with pytest.raises(Kill):
        generate_videos(
            model,
            unipc(),
            CFG,
            seeds,
            out_dir=tmp_path / "killed",
            corrector=DCW3,
            batch_size=2,
            on_chunk=kill_at(2),
        )
    folder = seed_folder(tmp_path / "killed", 11)
    assert sorted(p.name for p in (folder / "chunks").iterdir()) == [
        f"chunk_000{k}.safetensors" for k in range(3)
    ]
    assert not (folder / "video.safetensors").exists()
    assert json.loads((folder / "run.json").read_text())["chunks_done"] == 3
    spy = Spy(model)
    again = generate_videos(
        spy, unipc(), CFG, seeds, out_dir=tmp_path / "killed", corrector=DCW3, resume=True, batch_size=2
    )
    assert spy.calls == (CFG.num_chunks - 3) * CFG.num_steps  # only the unfinished chunks run again
    assert [r["resumed_chunks"] for r in again] == [3, 3]
    for a, b in zip(whole, again):
        assert torch.equal(load_video(a["folder"]), load_video(b["folder"]))
        assert json.loads(Path(a["drift"]).read_text()) == json.loads(Path(b["drift"]).read_text())
    drift = DriftTracker.from_json(again[1]["drift"])
    assert [r.index for r in drift.records] == list(range(CFG.num_chunks))  # replayed chunks are tracked
    # The same video as the in-memory sampler (folder runs change nothing).
    direct = sample_video(
        model, unipc(), CFG, generators=[torch.Generator().manual_seed(s) for s in seeds], corrector=DCW3
    )
    assert torch.equal(load_video(whole[0]["folder"]), direct[0])


def test_resume_of_a_complete_run_keeps_it(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    generate_videos(model, unipc(), CFG, [1], out_dir=tmp_path)
    before = snapshot(tmp_path)
    spy = Spy(model)
    generate_videos(spy, unipc(), CFG, [1], out_dir=tmp_path, resume=True)
    assert spy.calls == 0 and snapshot(tmp_path) == before


def test_mismatched_resume_is_refused_and_nothing_changes(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    with pytest.raises(Kill):
        generate_videos(model, unipc(), CFG, [2], out_dir=tmp_path, corrector=DCW3, on_chunk=kill_at(1))
    before = snapshot(tmp_path)
    with pytest.raises(
        RunFolderError, match=r"different config(.|\n)*sampler.num_steps: 3 in the folder, 4 now"
    ):
        generate_videos(
            model, unipc(), replace(CFG, num_steps=4), [2], out_dir=tmp_path, corrector=DCW3, resume=True
        )
    with pytest.raises(RunFolderError, match="corrector"):
        generate_videos(model, unipc(), CFG, [2], out_dir=tmp_path, corrector=DCW(low=0.1), resume=True)
    with pytest.raises(RunFolderError, match="already holds a vidfix run"):
        generate_videos(model, unipc(), CFG, [2], out_dir=tmp_path, corrector=DCW3)
    assert snapshot(tmp_path) == before


def test_non_finite_chunk_keeps_finished_chunks_on_disk(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    spy = Spy(model, nan_at=3 * CFG.num_steps + 1)
    with pytest.raises(NonFiniteChunkError, match=r"chunk 3 \(frames 9-12\).*seeds \[7\].*chunks") as info:
        generate_videos(spy, unipc(), CFG, [7], out_dir=tmp_path)
    assert info.value.chunk == 3
    folder = seed_folder(tmp_path, 7)
    assert sorted(p.name for p in (folder / "chunks").iterdir()) == [
        f"chunk_000{k}.safetensors" for k in range(3)
    ]
    # The finished chunks are good checkpoints: a resume with a healthy model completes the video.
    generate_videos(model, unipc(), CFG, [7], out_dir=tmp_path, resume=True)
    assert load_video(folder).shape == (3, CFG.num_frames, 8, 8)


def test_unwritable_output_folder_is_refused(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="is not writable"):
        generate_videos(model, unipc(), CFG, [0], out_dir=blocker / "out")


def test_start_context_is_part_of_the_run(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    def start(seeds: list[int]) -> torch.Tensor:
        return torch.stack([torch.full((3, 2, 8, 8), float(s) / 10) for s in seeds])

    with pytest.raises(Kill):
        generate_videos(
            model, unipc(), CFG, [3], out_dir=tmp_path / "a", start_context=start, on_chunk=kill_at(1)
        )
    generate_videos(model, unipc(), CFG, [3], out_dir=tmp_path / "a", start_context=start, resume=True)
    generate_videos(model, unipc(), CFG, [3], out_dir=tmp_path / "b", start_context=start)
    assert torch.equal(load_video(seed_folder(tmp_path / "a", 3)), load_video(seed_folder(tmp_path / "b", 3)))
    with pytest.raises(RunFolderError, match="start_context_sha256"):
        generate_videos(model, unipc(), CFG, [3], out_dir=tmp_path / "a", resume=True)
