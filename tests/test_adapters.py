"""Diffusers pipelines as vidfix Denoisers (calibration of the model a user runs), on tiny offline pipelines.

The oracle is the pipeline itself: an identity-tapped ``pipe(...)`` run records, at every step, the sample and
the data prediction its own denoising loop computed; the adapter must give the same prediction from the same
sample and timestep (text conditioning, guidance, layouts, timestep shapes), and its scheduler the same
timesteps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from _tiny_pipelines import build, call_kwargs
from vidfix.pipelines import SamplerConfig, sample_video, stabilize, stabilized
from vidfix.pipelines.adapters import (
    PipelineDenoiser,
    TextConditioning,
    corrector_from_calibration,
    encode_video,
    pipeline_scheduler,
    save_pipeline_calibration,
)

from vidfix import DCW, Identity
from vidfix.calibration import calibrate
from vidfix.protocols import StepInfo
from vidfix.tap import TapEvent

FAMILIES = ["wan", "ltx", "cogvideox", "hunyuan", "skyreels_df"]
SIZES = {
    "wan": (9, 16, 16),
    "skyreels_df": (9, 16, 16),
    "ltx": (9, 32, 32),
    "cogvideox": (9, 16, 16),
    "hunyuan": (9, 16, 16),
}


def denoiser(name: str, **options: object) -> PipelineDenoiser:
    """The adapter with the same text conditioning and guidance as ``call_kwargs(name)``."""
    pipe, kw = build(name), call_kwargs(name)
    if name == "hunyuan":
        text = TextConditioning({
            "encoder_hidden_states": kw["prompt_embeds"], "pooled_projections": kw["pooled_prompt_embeds"],
            "encoder_attention_mask": kw["prompt_attention_mask"],
        })  # fmt: skip
        return PipelineDenoiser.from_pipe(pipe, text=text, guidance_scale=kw["guidance_scale"], **options)  # type: ignore[arg-type]
    return PipelineDenoiser.from_pipe(
        pipe, kw["prompt"], negative_prompt=kw["negative_prompt"], guidance_scale=kw.get("guidance_scale"),
        max_sequence_length=kw["max_sequence_length"], **options,  # type: ignore[arg-type]
    )  # fmt: skip


class Step(NamedTuple):
    step: StepInfo
    x: torch.Tensor
    x0: torch.Tensor


def recorded_run(name: str, steps: int = 3) -> tuple[list[Step], torch.Tensor]:
    """Every step's (x, x0) of a plain pipeline run, ``(B, C, F, H, W)``, and its timesteps."""
    pipe, events = build(name), []

    def record(e: TapEvent) -> None:  # SkyReels steps views of its latents and overwrites them: copy
        events.append(Step(e.step, e.x.clone(), e.x0.clone()))

    with stabilized(pipe, Identity(), observer=record):
        pipe(**(call_kwargs(name) | {"num_inference_steps": steps}))
        timesteps = pipe.scheduler.timesteps.clone()
    if events[0].x.dim() == 4:  # SkyReels: one event per latent frame and step (4D slices): stack them
        F = len(events) // steps
        events = [
            Step(chunk[0].step, torch.stack([e.x for e in chunk], 2), torch.stack([e.x0 for e in chunk], 2))
            for chunk in (events[i * F : (i + 1) * F] for i in range(steps))
        ]
    return events, timesteps


@pytest.mark.parametrize("name", FAMILIES)
def test_adapter_reproduces_the_pipelines_own_prediction(name: str) -> None:
    events, timesteps = recorded_run(name)
    assert len(events) == len(timesteps) == 3
    den = denoiser(name)
    sched = pipeline_scheduler(build(name), events[0].x.shape)
    sched.set_timesteps(3)
    torch.testing.assert_close(sched.timesteps, timesteps.to(sched.timesteps.dtype))
    for ev, t in zip(events, timesteps):
        out = den(ev.x, t)
        step = ev.step
        # x0 from the output by the scheduler's prediction type: flow velocity, or v for CogVideoX.
        x0 = ev.x * step.alpha - out * step.beta if name == "cogvideox" else ev.x - out * step.beta
        torch.testing.assert_close(x0, ev.x0, atol=2e-5, rtol=1e-4)


def test_prompt_is_encoded_with_the_pipelines_encoder() -> None:
    pipe = build("wan")
    den = denoiser("wan")
    embeds, negative = pipe.encode_prompt("a cat", "negative", max_sequence_length=8, device="cpu")
    assert torch.equal(den.text.cond["encoder_hidden_states"], embeds)
    assert den.text.uncond is not None and torch.equal(den.text.uncond["encoder_hidden_states"], negative)
    assert den.guidance_scale == 5.0  # WanPipeline's default
    assert (
        PipelineDenoiser.from_pipe(pipe, "a cat", guidance_scale=1.0, max_sequence_length=8).text.uncond
        is None
    )
    with pytest.raises(ValueError, match="give a prompt"):
        PipelineDenoiser.from_pipe(pipe)


def _clips(name: str, n: int = 2) -> list[torch.Tensor]:
    T, H, W = SIZES[name]
    return [torch.rand(T, H, W, 3, generator=torch.Generator().manual_seed(i)) for i in range(n)]


@pytest.mark.parametrize("name", FAMILIES)
def test_encoded_clips_are_the_latents_the_pipeline_decodes(name: str) -> None:
    pipe = build(name)
    T, H, W = SIZES[name]
    clips = _clips(name)
    latents = encode_video(pipe, clips, height=H, width=W)
    pixels = pipe.video_processor.preprocess_video(
        torch.stack([c.permute(0, 3, 1, 2) for c in clips]), height=H, width=W
    )
    raw = torch.cat([pipe.vae.encode(p[None]).latent_dist.mode() for p in pixels])
    # Undo the normalisation exactly as each pipeline does before decoding.
    vae = pipe.vae
    if name in ("wan", "skyreels_df"):
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std_inv = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
        back = latents / std_inv + mean
    elif name == "ltx":
        back = pipe._denormalize_latents(
            latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor
        )
    elif name == "cogvideox":
        back = 1 / pipe.vae_scaling_factor_image * latents
    else:
        back = latents / vae.config.scaling_factor
    torch.testing.assert_close(back, raw, atol=1e-5, rtol=1e-5)
    ratio = pipe.vae_temporal_compression_ratio if name == "ltx" else pipe.vae_scale_factor_temporal
    assert latents.shape[2] == (T - 1) // ratio + 1
    uint8 = [(c * 255).round().to(torch.uint8).numpy() for c in clips]
    assert encode_video(pipe, uint8, height=H, width=W).shape == latents.shape
    with pytest.raises(ValueError, match=r"k\*\d\+1 frames"):
        encode_video(pipe, [c[:-1] for c in clips], height=H, width=W)


@pytest.mark.parametrize("name", FAMILIES)
def test_calibration_file_round_trips_into_stabilize(name: str, tmp_path: Path) -> None:
    pipe = build(name)
    _, H, W = SIZES[name]
    reference = encode_video(pipe, _clips(name), height=H, width=W)
    dims = "2d" if name == "skyreels_df" else "3d"
    result = calibrate(
        denoiser(name), pipeline_scheduler(pipe, reference.shape), reference, num_steps=3, dims=dims
    )
    path = save_pipeline_calibration(result, tmp_path / "cal.json", pipe=pipe, info={"prompt": "a cat"})
    data = json.loads(path.read_text())
    assert data["pipeline"]["class"] == type(pipe).__name__ and data["pipeline"]["prompt"] == "a cat"
    dcw = corrector_from_calibration(path, pipe)
    assert dcw.to_dict() == result.to_dcw().to_dict() and dcw.dims == dims
    handle = stabilize(pipe, calibration=path)
    try:
        assert handle.corrector.to_dict() == dcw.to_dict()  # type: ignore[attr-defined]
        out = pipe(**call_kwargs(name)).frames
        assert torch.isfinite(out).all()
    finally:
        handle.undo()


def test_calibration_file_from_another_pipeline_or_scheduler_is_refused(tmp_path: Path) -> None:
    pipe = build("wan")
    reference = encode_video(pipe, _clips("wan"), height=16, width=16)
    result = calibrate(denoiser("wan"), pipeline_scheduler(pipe, reference.shape), reference, num_steps=3)
    path = save_pipeline_calibration(result, tmp_path / "wan.json", pipe=pipe)
    with pytest.raises(ValueError, match="measured on WanPipeline, not LTXPipeline"):
        stabilize(build("ltx"), calibration=path)
    data = json.loads(path.read_text())
    (tmp_path / "other.json").write_text(json.dumps(data | {"pipeline": {}, "scheduler": "DDIMScheduler"}))
    with pytest.raises(
        ValueError, match="measured with DDIMScheduler; this pipeline runs UniPCMultistepScheduler"
    ):
        stabilize(pipe, calibration=tmp_path / "other.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read calibration file"):
        stabilize(pipe, calibration=tmp_path / "junk.json")
    with pytest.raises(ValueError, match="not both"):
        stabilize(pipe, DCW(low=0.1), calibration=path)
    with pytest.raises(TypeError, match="needs a corrector"):
        stabilize(pipe)
    assert type(pipe).__name__ == "WanPipeline" and not hasattr(type(pipe), "_vidfix_handle")


def test_skyreels_adapter_drives_the_chunked_sampler_with_context() -> None:
    """Rollouts (a rollout calibration's building block): SkyReels DF conditions each chunk on clean frames."""
    pipe = build("skyreels_df")
    den = denoiser("skyreels_df")
    cfg = SamplerConfig(
        num_frames=5, chunk_frames=3, context_frames=1, channels=16, height=2, width=2, num_steps=2
    )
    sched = pipeline_scheduler(pipe, (1, 16, 3, 2, 2))
    gens = [torch.Generator().manual_seed(0)]
    video = sample_video(den, sched, cfg, generators=gens, corrector=DCW(low=0.05, dims="2d"))
    assert video.shape == (1, 16, 5, 2, 2) and torch.isfinite(video).all()
    # The context reaches the model: other context frames, other prediction.
    x = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    t = sched.timesteps[0] if len(sched.timesteps) else torch.tensor(999)
    c = torch.randn(1, 16, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(den(x, t, context=c), den(x, t, context=c + 1))


def test_models_without_context_refuse_it_and_unsupported_pipelines_are_named() -> None:
    den = denoiser("wan")
    cfg = SamplerConfig(
        num_frames=6, chunk_frames=3, context_frames=1, channels=16, height=2, width=2, num_steps=2
    )
    with pytest.raises(ValueError, match="WanPipeline takes no context frames"):
        sample_video(
            den, pipeline_scheduler(build("wan"), (1, 16, 3, 2, 2)), cfg, generators=[torch.Generator()]
        )
    with pytest.raises(TypeError, match="calibrate the text-to-video model"):
        PipelineDenoiser.from_pipe(build("wan_i2v"), "a cat")
    with pytest.raises(TypeError, match="not supported"):
        PipelineDenoiser.from_pipe(object(), "a cat")
