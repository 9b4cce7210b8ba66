"""Resumable runs: checkpoint per chunk, bit-identical resume after a kill, refusals, non-finite chunks on disk;
checksums that catch damaged files (named, generated again), locks, unique temporary files."""

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
    RunFolder,
    RunFolderError,
    SamplerConfig,
    generate_videos,
    load_video,
    sample_video,
    seed_folder,
)
from vidfix.pipelines.runs import (
    RunLockedError,
    RunRepairWarning,
    file_sha256,
    read_manifest,
    run_spec,
    verify_run,
    write_manifest,
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
    """Every file's bytes (not the lock files, which name the last process that held them)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def flip_bytes(path: Path, offset: int = -16) -> None:
    """Damage a file in place: invert a few bytes (near its end: inside the tensor data of a safetensors file)."""
    data = bytearray(path.read_bytes())
    for i in range(4):
        data[offset - i] ^= 0xFF
    path.write_bytes(bytes(data))


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
    (rec,) = generate_videos(spy, unipc(), CFG, [1], out_dir=tmp_path, resume=True, fps=8.0)  # now with an .mp4
    assert spy.calls == 0 and rec["kept"] and rec["files"]["video.mp4"] == file_sha256(Path(rec["mp4"]))
    assert verify_run(tmp_path)[0].complete


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


def test_run_json_records_a_checksum_per_chunk_and_final_file(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    (rec,) = generate_videos(model, unipc(), CFG, [5], out_dir=tmp_path, corrector=DCW3, fps=8.0)
    folder = Path(rec["folder"])
    run = json.loads((folder / "run.json").read_text())
    assert run["complete"] and len(run["chunks"]) == CFG.num_chunks
    for k, sha in enumerate(run["chunks"]):
        assert sha == file_sha256(folder / "chunks" / f"chunk_{k:04d}.safetensors")
    assert set(run["files"]) == {"video.safetensors", "drift.json", "video.mp4"}
    for name, sha in run["files"].items():
        assert sha == file_sha256(folder / name) == rec["files"][name]
    assert not list(folder.rglob("*.tmp*")), "temporary files left behind"
    (report,) = verify_run(folder)
    assert report.ok and report.complete and report.chunks_ok == CFG.num_chunks


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_early_chunk_is_named_and_generated_again(
    model: TinyChunkDenoiser, tmp_path: Path, damage: str
) -> None:
    """Regression: flipped bytes in an early chunk used to resume (exit 0) into a different video."""
    whole = generate_videos(model, unipc(), CFG, [4], out_dir=tmp_path / "whole", corrector=DCW3)
    with pytest.raises(Kill):
        generate_videos(model, unipc(), CFG, [4], out_dir=tmp_path / "k", corrector=DCW3, on_chunk=kill_at(3))
    chunk = seed_folder(tmp_path / "k", 4) / "chunks" / "chunk_0001.safetensors"
    if damage == "flip":
        flip_bytes(chunk)
    elif damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:50])
    else:
        chunk.unlink()
    (report,) = verify_run(chunk.parent.parent)
    assert report.chunks_ok == 1 and "chunks/chunk_0001.safetensors" in report.problems[0]
    spy = Spy(model)
    with pytest.warns(RunRepairWarning, match=r"chunk_0001\.safetensors: (damaged|missing)"):
        again = generate_videos(spy, unipc(), CFG, [4], out_dir=tmp_path / "k", corrector=DCW3, resume=True)
    assert spy.calls == (CFG.num_chunks - 1) * CFG.num_steps  # from the damaged chunk on
    assert again[0]["resumed_chunks"] == 1
    assert torch.equal(load_video(again[0]["folder"]), load_video(whole[0]["folder"]))
    assert verify_run(tmp_path / "k")[0].ok


def test_damaged_final_files_are_rebuilt_from_the_chunks(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    """Regression: a truncated video.safetensors or a garbled drift.json used to be left in place."""
    (rec,) = generate_videos(model, unipc(), CFG, [6], out_dir=tmp_path, corrector=DCW3, fps=8.0)
    folder = Path(rec["folder"])
    before = snapshot(folder)
    (folder / "video.safetensors").write_bytes(before["video.safetensors"][:100])
    (folder / "drift.json").write_text('{"dims": "3d", "chunks": [')
    (folder / "video.mp4").write_bytes(before["video.mp4"][:48])  # the size a killed encoder once left
    (report,) = verify_run(folder)
    assert not report.complete and report.chunks_ok == CFG.num_chunks
    assert {p.split(":")[0] for p in report.problems} == {"video.safetensors", "drift.json", "video.mp4"}
    spy = Spy(model)
    with pytest.warns(RunRepairWarning, match="video.safetensors: damaged"):
        generate_videos(spy, unipc(), CFG, [6], out_dir=tmp_path, corrector=DCW3, resume=True, fps=8.0)
    assert spy.calls == 0  # rebuilt from the chunks alone
    assert snapshot(folder) == before


def test_an_unreadable_run_file_is_refused_with_its_name(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    generate_videos(model, unipc(), CFG, [1], out_dir=tmp_path)
    run_json = seed_folder(tmp_path, 1) / "run.json"
    run_json.write_text(run_json.read_text()[:40])
    with pytest.raises(RunFolderError, match=r"seed_000001/run\.json: damaged run file.*delete"):
        generate_videos(model, unipc(), CFG, [1], out_dir=tmp_path, resume=True)
    run_json.write_text("[]")
    with pytest.raises(RunFolderError, match=r"run\.json is not a vidfix run file"):
        generate_videos(model, unipc(), CFG, [1], out_dir=tmp_path, resume=True)


def test_a_second_writer_is_refused(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    """Regression: two writers with --resume used to collide on fixed .tmp names."""
    spec = run_spec(CFG, unipc(), None, dtype=torch.float32)
    with RunFolder(seed_folder(tmp_path, 3), 3, spec) as holder:
        holder.open(resume=False)
        with pytest.raises(RunLockedError, match=r"seed_000003 is being written by another vidfix process \(pid \d+"):
            generate_videos(model, unipc(), CFG, [2, 3], out_dir=tmp_path, resume=True)
        assert not seed_folder(tmp_path, 2).exists()  # refused before any work
    generate_videos(model, unipc(), CFG, [2, 3], out_dir=tmp_path, resume=True)  # released: fine now


def test_temporary_files_are_unique_and_a_resume_removes_stale_ones(
    model: TinyChunkDenoiser, tmp_path: Path
) -> None:
    with pytest.raises(Kill):
        generate_videos(model, unipc(), CFG, [8], out_dir=tmp_path, on_chunk=kill_at(1))
    chunks = seed_folder(tmp_path, 8) / "chunks"
    stale = chunks / ".chunk_0002.safetensors.4242-0123456789ab.tmp"  # what a killed writer leaves
    stale.write_bytes(b"half a file")
    names = set()
    from vidfix.pipelines import runs

    for _ in range(3):
        with runs.atomic_path(chunks / "x.json") as tmp:
            names.add(tmp.name)
            tmp.write_text("{}")
    assert len(names) == 3 and all(n.startswith(".x.json.") and n.endswith(".tmp.json") for n in names)
    generate_videos(model, unipc(), CFG, [8], out_dir=tmp_path, resume=True)
    assert not stale.exists()


def test_manifest_is_merged_checked_and_named_when_damaged(tmp_path: Path) -> None:
    spec = {"a": 1}
    write_manifest(tmp_path, spec, [{"seed": 2, "folder": "x"}])
    write_manifest(tmp_path, spec, [{"seed": 0, "folder": "y"}, {"seed": 2, "folder": "z"}])
    assert [(v["seed"], v["folder"]) for v in read_manifest(tmp_path)["videos"]] == [(0, "y"), (2, "z")]
    (tmp_path / "manifest.json").write_text("[]")  # regression: a manifest holding [] was a traceback
    with pytest.raises(RunFolderError, match=r"manifest\.json is not a vidfix manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"type": "vidfix-manif')
    with pytest.raises(ValueError, match=r"manifest\.json: damaged manifest \(not valid JSON"):
        read_manifest(tmp_path)


def test_one_video_writer_pads_odd_sizes_and_writes_atomically(tmp_path: Path) -> None:
    """Regression: three H.264 writers cropped, padded or refused odd frame sizes; now one writer pads."""
    import av
    from vidfix.pipelines.video import write_mp4

    video = torch.rand(3, 5, 7, 9, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (C, F, H, W), odd H, W
    path = write_mp4(tmp_path / "odd.mp4", video, fps=8.0)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (8, 10, 3)  # one repeated row and column
    before = path.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        write_mp4(path, torch.full((3, 5, 8, 8), float("nan")))
    assert path.read_bytes() == before and not list(tmp_path.glob(".*")), "a failed write touched the file"
    root = Path(__file__).resolve().parents[1]
    writers = [p for d in ("vidfix", "pipelines", "scripts", "metrics") for p in (root / d).rglob("*.py")
               if "add_stream(" in p.read_text()]  # fmt: skip
    assert writers == [root / "metrics" / "io.py"], writers
