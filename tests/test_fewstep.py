"""The sampler's few-step x0 / re-noise mode (``FewStepScheduler``) with a flow-matching chunk denoiser."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from _tiny_models import PerItem, TinyChunkDenoiser
from vidfix.pipelines import (
    FewStepScheduler,
    SamplerConfig,
    generate_videos,
    load_video,
    run_spec,
    sample_video,
    seed_folder,
)
from vidfix.pipelines.factory import make_scheduler

from vidfix import DCW, DriftTracker, EpsScaling, Identity


def config(**overrides: object) -> SamplerConfig:
    base = dict(num_frames=14, chunk_frames=4, context_frames=2, channels=3, height=8, width=8, num_steps=4)
    return SamplerConfig(**(base | overrides))  # type: ignore[arg-type]


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture(scope="module")
def model() -> TinyChunkDenoiser:
    return TinyChunkDenoiser().eval()


def test_levels_are_the_warped_self_forcing_list() -> None:
    # Self-Forcing: a table of shifted sigmas over the training steps, indexed at 1000 - level.
    u = torch.linspace(1.0, 0.0, 1001, dtype=torch.float64)[:-1]
    table = torch.cat([5.0 * u / (1 + 4.0 * u), torch.zeros(1, dtype=torch.float64)])
    want = table[1000 - torch.tensor([1000, 750, 500, 250])].float()
    for sched in (FewStepScheduler(shift=5.0), FewStepScheduler(shift=5.0, levels=[1000, 750, 500, 250])):
        sched.set_timesteps(4)
        torch.testing.assert_close(sched.sigmas[:-1], want)
        assert float(sched.sigmas[-1]) == 0.0
        torch.testing.assert_close(sched.timesteps, want * 1000)
    plain = FewStepScheduler()
    plain.set_timesteps(4)
    assert plain.sigmas.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    with pytest.raises(ValueError, match="4 fixed levels"):
        FewStepScheduler(levels=[1000, 750, 500, 250]).set_timesteps(8)
    with pytest.raises(ValueError, match="strictly decreasing"):
        FewStepScheduler(levels=[500, 750])
    with pytest.raises(ValueError, match="shift must be > 0"):
        FewStepScheduler(shift=0.0)


@torch.no_grad()
def plain_few_step(
    model: TinyChunkDenoiser, cfg: SamplerConfig, seeds: list[int], shift: float
) -> torch.Tensor:
    """The mode written out: per chunk x0 = x - s v, re-noise with each video's own noise (overlap 0)."""
    g = gens(*seeds)
    sched = FewStepScheduler(shift=shift)
    sched.set_timesteps(cfg.num_steps)
    s = sched.sigmas.tolist()
    shape = (cfg.channels, cfg.chunk_frames, cfg.height, cfg.width)
    video = torch.zeros(len(seeds), cfg.channels, 0, cfg.height, cfg.width)
    while video.shape[2] < cfg.num_frames:
        context = video[:, :, -cfg.context_frames :] if video.shape[2] else None
        x = torch.stack([torch.randn(shape, generator=gi) for gi in g])
        for i, t in enumerate(sched.timesteps):
            x0 = x - s[i] * model(x, t, context=context)
            x = (
                x0
                if s[i + 1] == 0
                else (1 - s[i + 1]) * x0
                + s[i + 1] * torch.stack([torch.randn(shape, generator=gi) for gi in g])
            )
        video = torch.cat([video, x], 2)
    return video[:, :, : cfg.num_frames]


@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_identity_equals_the_plain_few_step_loop(model: TinyChunkDenoiser, shift: float) -> None:
    cfg = config()
    want = plain_few_step(model, cfg, [3, 5], shift)
    for corrector in (None, Identity(), DCW(low=0.0), EpsScaling(scale=1.0)):
        got = sample_video(
            model, FewStepScheduler(shift=shift), cfg, generators=gens(3, 5), corrector=corrector
        )
        assert torch.equal(got, want), corrector
    corrected = sample_video(
        model, FewStepScheduler(shift=shift), cfg, generators=gens(3, 5), corrector=DCW(low=0.05)
    )
    assert not torch.equal(corrected, want)


def test_video_depends_only_on_its_seed(model: TinyChunkDenoiser) -> None:
    cfg = config(overlap=1, context_noise=20.0)
    m, dcw = PerItem(model), DCW(low=0.03, temporal=-0.02)
    both = sample_video(m, FewStepScheduler(shift=3.0), cfg, generators=gens(3, 5), corrector=dcw)
    alone = sample_video(m, FewStepScheduler(shift=3.0), cfg, generators=gens(5), corrector=dcw)
    assert torch.equal(both[1:], alone)


def test_steps_report_the_corrected_x0_and_the_renoise(model: TinyChunkDenoiser) -> None:
    cfg, steps, tracker = config(num_frames=8), [], DriftTracker()
    sched = FewStepScheduler(shift=3.0)
    sample_video(
        model,
        sched,
        cfg,
        generators=gens(0),
        corrector=DCW(low=0.05),
        callback=steps.append,
        on_chunk=tracker,
    )
    sched.set_timesteps(cfg.num_steps)
    assert len(steps) == 2 * cfg.num_steps and [r.index for r in tracker.records] == [0, 1]
    for d in steps:
        i = d["step"]
        assert d["s"] == pytest.approx(float(sched.sigmas[i]))
        assert float(d["t"]) == pytest.approx(float(sched.timesteps[i]))
        if i + 1 < cfg.num_steps:
            assert not torch.equal(d["x_next"], d["x0"])  # re-noised to the next level
        else:
            assert d["x_next"] is d["x0"]  # the last prediction is the chunk
    # The chunk's next input is the next step's x.
    assert all(
        torch.equal(a["x_next"], b["x"]) for a, b in itertools.pairwise(steps) if a["chunk"] == b["chunk"]
    )


def test_resume_is_bit_identical(model: TinyChunkDenoiser, tmp_path: Path) -> None:
    cfg = config(num_frames=11, overlap=1, context_noise=20.0, anchor=0.5)
    dcw = DCW(low=0.03, spatial=0.01, temporal=-0.01)
    sched = make_scheduler("fewstep", shift=3.0)

    def kill(c: torch.Tensor, *, index: int, restored: bool, **_: object) -> None:
        if index == 2 and not restored:
            raise RuntimeError("simulated kill")

    generate_videos(model, sched, cfg, [4], out_dir=tmp_path / "full", corrector=dcw)
    with pytest.raises(RuntimeError, match="simulated kill"):
        generate_videos(model, sched, cfg, [4], out_dir=tmp_path / "part", corrector=dcw, on_chunk=kill)
    [rec] = generate_videos(model, sched, cfg, [4], out_dir=tmp_path / "part", corrector=dcw, resume=True)
    assert rec["resumed_chunks"] == 3
    assert torch.equal(
        load_video(seed_folder(tmp_path / "part", 4)), load_video(seed_folder(tmp_path / "full", 4))
    )


def test_scheduler_saves_loads_and_describes_itself(tmp_path: Path) -> None:
    sched = FewStepScheduler(shift=5.0, levels=[1000, 750, 500, 250])
    sched.save_pretrained(tmp_path)
    again = FewStepScheduler.from_pretrained(tmp_path)
    public = lambda c: {k: v for k, v in dict(c).items() if not k.startswith("_")}  # noqa: E731
    assert public(again.config) == public(sched.config)
    again.set_timesteps(4)
    sched.set_timesteps(4)
    assert torch.equal(again.sigmas, sched.sigmas)
    spec = run_spec(config(), sched, DCW(low=0.01))
    assert spec["scheduler"]["class"] == "FewStepScheduler" and spec["scheduler"]["config"]["shift"] == 5.0
    assert isinstance(make_scheduler("fewstep", shift=2.0), FewStepScheduler)


def test_diffusers_style_step_matches_the_sampler_pieces() -> None:
    sched = FewStepScheduler(shift=3.0)
    sched.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    x, v, noise = (torch.randn(1, 2, 2, 4, 4, generator=g) for _ in range(3))
    out = sched.step(v, sched.timesteps[1], x, noise=noise)
    s, s_next = sched.levels(1)
    torch.testing.assert_close(out.pred_original_sample, x - s * v)
    torch.testing.assert_close(out.prev_sample, (1 - s_next) * (x - s * v) + s_next * noise)
    last = sched.step(v, sched.timesteps[3], x, return_dict=False)
    assert torch.equal(last[0], last[1])


def test_generate_cli_runs_the_few_step_mode(tmp_path: Path) -> None:
    from vidfix.scripts import generate as gen

    folder = tmp_path / "model"
    TinyChunkDenoiser().save_pretrained(folder)
    argv = ["--model", str(folder), "--model-class", "_tiny_models:TinyChunkDenoiser", "--no-progress",
            "--frames", "8", "--steps", "4", "--scheduler", "fewstep", "--shift", "5", "--seeds", "0",
            "--corrector", "dcw", "--low", "0.02", "--out", str(tmp_path / "run")]  # fmt: skip
    assert gen.main(argv) == 0
    spec = json.loads((tmp_path / "run" / "manifest.json").read_text())["spec"]
    assert spec["scheduler"]["class"] == "FewStepScheduler" and spec["scheduler"]["config"]["shift"] == 5.0
    cfg = config(num_frames=8)
    want = sample_video(
        TinyChunkDenoiser().eval(),
        FewStepScheduler(shift=5.0),
        cfg,
        generators=gens(0),
        corrector=DCW(low=0.02),
    )
    assert torch.equal(load_video(seed_folder(tmp_path / "run", 0)), want[0])
