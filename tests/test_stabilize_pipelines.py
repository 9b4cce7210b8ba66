"""stabilize() on every supported diffusers pipeline, with tiny random-weight components built offline."""

from __future__ import annotations

import functools
import inspect

import pytest
import torch
from _tiny_pipelines import BUILDERS, build, call_kwargs
from diffusers.callbacks import PipelineCallback
from vidfix.pipelines import SUPPORTED_PIPELINES, Stabilized, stabilize, stabilized

from vidfix import DCW, EpsScaling, Identity

NAMES = list(BUILDERS)


def run(name: str, **extra: object) -> torch.Tensor:
    return build(name)(**(call_kwargs(name) | extra)).frames


@functools.cache
def plain(name: str) -> torch.Tensor:
    return run(name)


def nonzero(name: str) -> DCW:
    # 3D everywhere: SkyReels' per-frame steps are gathered and corrected together (test_stabilize_skyreels.py).
    return DCW(low=0.2, spatial=0.2, temporal=0.2)


def add_one_at_last_step(calls: list[int]):
    def callback(pipe, i, t, kwargs):
        calls.append(i)
        assert set(kwargs) == {"latents"}  # exactly the inputs the user asked for
        if i == pipe.num_timesteps - 1:
            kwargs["latents"] = kwargs["latents"] + 1.0
        return kwargs

    return callback


def test_every_required_pipeline_is_supported():
    assert {type(build(n)).__name__ for n in NAMES} == set(SUPPORTED_PIPELINES)


@pytest.mark.parametrize("track_drift", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_identity_reproduces_plain_run(name, track_drift):
    with stabilized(build(name), Identity(), track_drift=track_drift) as handle:
        out = run(name)
    assert torch.equal(out, plain(name))
    assert all(c.steps > 0 and c.corrected == 0 for c in handle.chunks)
    assert (handle.tracker is not None) == track_drift


@pytest.mark.parametrize("name", NAMES)
def test_corrector_changes_output_and_undo_restores(name):
    pipe = build(name)
    scheduler, cls, config = pipe.scheduler, type(pipe), dict(pipe.config)
    handle = stabilize(pipe, nonzero(name))
    try:
        assert type(pipe) is not cls and isinstance(pipe, cls) and type(pipe).__name__ == cls.__name__
        assert dict(pipe.config) == config  # the tapped scheduler keeps the pipeline's config entry
        assert inspect.signature(pipe.__call__) == inspect.signature(cls.__call__.__get__(pipe))
        out = run(name)
    finally:
        handle.undo()
    assert pipe.scheduler is scheduler and type(pipe) is cls and not handle.active
    assert (out - plain(name)).abs().max() > 1e-4
    assert all(c.corrected > 0 for c in handle.chunks)
    assert torch.equal(run(name), plain(name))
    handle.undo()  # idempotent


@pytest.mark.parametrize("track_drift", [False, True])
@pytest.mark.parametrize("corrector", ["identity", "dcw"])
@pytest.mark.parametrize("name", NAMES)
def test_user_callback_runs_and_edits_latents(name, corrector, track_drift):
    c = Identity() if corrector == "identity" else nonzero(name)
    calls: list[int] = []
    with stabilized(build(name), c, track_drift=track_drift):
        reference = run(name)
        edited = run(name, callback_on_step_end=add_one_at_last_step(calls))
    assert calls and calls[-1] == build(name).num_timesteps - 1
    # The edit at the last step reaches the output; nothing else changed.
    assert torch.equal(edited, reference + 1.0)
    if corrector == "identity":
        assert torch.equal(reference, plain(name))


def test_user_callback_sees_only_its_inputs_while_drift_is_tracked():
    seen: list[set[str]] = []

    def callback(pipe, i, t, kwargs):
        seen.append(set(kwargs))
        return {}

    with stabilized(build("wan"), Identity(), track_drift=True) as handle:
        out = run("wan", callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["prompt_embeds"])
    assert seen == [{"prompt_embeds"}] * 2
    assert torch.equal(out, plain("wan"))
    assert handle.tracker is not None and len(handle.tracker.records) == 3


class _AddOne(PipelineCallback):
    tensor_inputs = ["latents"]  # noqa: RUF012 (diffusers' own convention)

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        if step_index == pipeline.num_timesteps - 1:
            callback_kwargs["latents"] = callback_kwargs["latents"] + 1.0
        return callback_kwargs


def test_pipeline_callback_objects_compose():
    with stabilized(build("wan"), Identity(), track_drift=True):
        out = run("wan", callback_on_step_end=_AddOne())
    assert torch.equal(out, plain("wan") + 1.0)


def test_drift_record_windows_for_single_chunk_runs():
    for window, entries in [(1, 3), (2, 2), (3, 1)]:
        with stabilized(build("wan"), Identity(), track_drift=True, drift_window=window) as handle:
            out = run("wan")
        assert handle.tracker is not None
        assert [r.frames for r in handle.tracker.records] == [
            min(window, 3 - k * window) for k in range(entries)
        ]
        assert handle.tracker.records[0].mean == out[:, :, :window].flatten(2).mean(-1).double().tolist()


@pytest.mark.parametrize("name", ["ltx", "ltx_condition", "cogvideox"])
def test_drift_record_unpacks_the_layout(name):
    with stabilized(build(name), Identity(), track_drift=True, drift_window=3) as handle:
        run(name)
    assert handle.tracker is not None and len(handle.tracker.records) == 1
    channels = {"ltx": 8, "ltx_condition": 8, "cogvideox": 4}[name]
    assert len(handle.tracker.records[0].mean[0]) == channels and handle.tracker.records[0].frames == 3


def test_ltx_condition_batch_of_two_without_conditions():
    kwargs = {"conditions": None, "num_videos_per_prompt": 2}
    ref = run("ltx_condition", **kwargs)
    with stabilized(build("ltx_condition"), Identity()):
        assert torch.equal(run("ltx_condition", **kwargs), ref)
    with stabilized(build("ltx_condition"), nonzero("ltx")) as handle:
        assert (run("ltx_condition", **kwargs) - ref).abs().max() > 1e-4
    # Two steps; the second lands on noise level 0 (x_next = x0): nothing to correct there.
    assert handle.chunks[0].steps == 2 and handle.chunks[0].corrected == 1


def test_epsilon_scaling_runs_through_a_pipeline():
    with stabilized(build("hunyuan"), EpsScaling(scale=1.05)):
        assert (run("hunyuan") - plain("hunyuan")).abs().max() > 1e-4


def test_observer_sees_every_step_in_bcfhw():
    events = []
    with stabilized(build("cogvideox"), Identity(), observer=events.append):
        run("cogvideox")
    assert len(events) == 2 and events[0].x.shape == (1, 4, 3, 2, 2)  # (B, C, F, H, W), not (B, F, C, H, W)


def test_context_manager_and_double_stabilize():
    pipe = build("hunyuan")
    with stabilized(pipe, Identity()) as handle:
        assert isinstance(handle, Stabilized) and handle.active
        with pytest.raises(RuntimeError, match="already stabilized"):
            stabilize(pipe, Identity())
    assert not handle.active and type(pipe).__name__ == "HunyuanVideoPipeline"
    with stabilized(pipe, Identity()):  # a second stabilize after undo is fine
        pass


def test_unsupported_pipeline_lists_supported_ones():
    from diffusers import SkyReelsV2Pipeline

    sky = build("skyreels_df")
    other = SkyReelsV2Pipeline(
        tokenizer=sky.tokenizer,
        text_encoder=sky.text_encoder,
        transformer=sky.transformer,
        vae=sky.vae,
        scheduler=sky.scheduler,
    )
    with pytest.raises(TypeError, match="SkyReelsV2Pipeline is not supported") as err:
        stabilize(other, Identity())
    for name in SUPPORTED_PIPELINES:
        assert name in str(err.value)
    with pytest.raises(TypeError, match="WanPipeline"):
        stabilize(object(), Identity())


def test_unsupported_scheduler_lists_supported_ones_and_changes_nothing():
    from diffusers import EulerAncestralDiscreteScheduler

    pipe = build("hunyuan")
    scheduler, cls = pipe.scheduler, type(pipe)
    pipe.scheduler = EulerAncestralDiscreteScheduler()
    try:
        with pytest.raises(
            TypeError, match=r"EulerAncestralDiscreteScheduler is not supported.*UniPCMultistep"
        ):
            stabilize(pipe, DCW(low=0.1))
        assert type(pipe) is cls and isinstance(pipe.scheduler, EulerAncestralDiscreteScheduler)
    finally:
        pipe.scheduler = scheduler


def test_scheduler_replaced_after_stabilize_is_tapped_not_ignored():
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe = build("wan")
    original = pipe.scheduler
    handle = stabilize(pipe, nonzero("wan"))
    try:
        replacement = FlowMatchEulerDiscreteScheduler(shift=3.0)
        pipe.scheduler = replacement
        with pytest.warns(UserWarning, match="replaced after stabilize"):
            run("wan")
        assert (
            handle.chunks[0].steps == 2 and handle.chunks[0].corrected == 1
        )  # the step to noise 0 needs none
    finally:
        handle.undo()
        restored = pipe.scheduler
        pipe.scheduler = original
    assert restored is replacement


def test_bad_drift_window():
    with pytest.raises(ValueError, match="drift_window"):
        stabilize(build("wan"), Identity(), drift_window=0)


def test_save_pretrained_while_stabilized_writes_the_original_scheduler(tmp_path):
    import json

    with stabilized(build("wan"), DCW(low=0.1)):
        with pytest.warns(UserWarning, match="not saved with it"):  # Stabilized.save_pretrained keeps it
            build("wan").save_pretrained(tmp_path)
    assert json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == (
        "UniPCMultistepScheduler"
    )
    assert json.loads((tmp_path / "model_index.json").read_text())["scheduler"] == [
        "diffusers",
        "UniPCMultistepScheduler",
    ]
