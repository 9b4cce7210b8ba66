"""A stabilized pipeline's life: shared components, swapped schedulers, saving, pickling (issue 12).

Regressions: ``WanPipeline(**pipe.components)`` and ``from_pipe(pipe)`` kept the tapped scheduler after
``undo()``; a scheduler swapped in after ``stabilize`` (``type(s).from_config(...)``) came back tapped after
``undo()``; ``save_pretrained`` dropped the correction silently; stabilized pipelines could not be pickled.
"""

from __future__ import annotations

import copy
import io
import json
import pickle

import pytest
import torch
from _tiny_pipelines import build, call_kwargs
from diffusers import UniPCMultistepScheduler, WanPipeline
from vidfix.pipelines import stabilize, stabilize_from_pretrained, stabilized, stabilizer

from vidfix import DCW, is_tapped
from vidfix.correctors import BandAffine, BandAnchor, Chain

DCW3 = DCW(low=0.2, spatial=0.2, temporal=0.2)


def run(pipe, name: str = "wan") -> torch.Tensor:
    return pipe(**call_kwargs(name)).frames


def test_scheduler_keeps_its_class_while_stabilized():
    pipe = build("wan")
    with stabilized(pipe, DCW3):
        assert type(pipe.scheduler) is UniPCMultistepScheduler and is_tapped(pipe.scheduler)
    assert not is_tapped(pipe.scheduler)


def test_pipelines_built_from_components_are_plain_after_undo():
    pipe = build("wan")
    plain = run(pipe)
    handle = stabilize(pipe, DCW3)
    try:
        stabilized_out = run(pipe)
        from_components = WanPipeline(**pipe.components)
        from_pipe = WanPipeline.from_pipe(pipe)
        for other in (from_components, from_pipe):
            other.set_progress_bar_config(disable=True)
            # They share the stabilized scheduler (and so its correction) while the stabilizer is active.
            assert other.scheduler is pipe.scheduler
            assert torch.equal(run(other), stabilized_out)
    finally:
        handle.undo()
    for other in (from_components, from_pipe):
        assert not is_tapped(other.scheduler)
        assert torch.equal(run(other), plain)
    assert torch.equal(run(pipe), plain)


@pytest.mark.parametrize("call_before_undo", [True, False])
def test_scheduler_swapped_after_stabilize_is_plain_after_undo(call_before_undo):
    pipe = build("wan")
    original = pipe.scheduler
    plain = run(pipe)
    handle = stabilize(pipe, DCW3)
    try:
        # The idiom users write to change a setting; it used to build another tapped scheduler.
        replacement = type(pipe.scheduler).from_config(pipe.scheduler.config)
        assert not is_tapped(replacement)
        pipe.scheduler = replacement
        if call_before_undo:
            with pytest.warns(UserWarning, match="replaced after stabilize"):
                corrected = run(pipe)
            assert (corrected - plain).abs().max() > 1e-4 and handle.chunks[0].corrected >= 1
    finally:
        handle.undo()
    assert pipe.scheduler is replacement and not is_tapped(pipe.scheduler)
    assert torch.equal(run(pipe), plain)
    pipe.scheduler = original


def test_save_pretrained_warns_and_the_handle_saves_the_settings(tmp_path):
    pipe = build("wan")
    with stabilized(pipe, DCW3, track_drift=True, drift_window=2) as handle:
        corrected = run(pipe)
        with pytest.warns(UserWarning, match="not part of the diffusers scheduler config"):
            pipe.save_pretrained(tmp_path / "plain")
        path = handle.save_pretrained(tmp_path / "kept")
    saved = json.loads(path.read_text())
    assert saved["corrector"] == DCW3.to_dict() and saved["track_drift"] and saved["drift_window"] == 2
    index = json.loads((tmp_path / "kept" / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "UniPCMultistepScheduler"]
    loaded = WanPipeline.from_pretrained(tmp_path / "kept")
    loaded.set_progress_bar_config(disable=True)
    with pytest.raises(FileNotFoundError, match=r"vidfix_stabilize\.json"):
        stabilize_from_pretrained(loaded, tmp_path / "plain")
    again = stabilize_from_pretrained(loaded, tmp_path / "kept")
    try:
        assert again.track_drift and again.drift_window == 2
        # Reloaded weights: the same run up to float rounding of the reload (plain runs differ alike).
        torch.testing.assert_close(run(loaded), corrected, atol=1e-5, rtol=0)
        assert again.tracker is not None
    finally:
        again.undo()


def test_save_pretrained_round_trips_band_affine_and_chain(tmp_path):
    """Issue 12: a BandAffine or Chain stabilizer saved, then failed to load ("unknown corrector type")."""
    affine = BandAffine(knots=(0.0, 1.0), gain={"low": [[-0.1], [-0.05]]}, offset=[[0.01], [0.0]])
    chain = Chain(affine, DCW(low=0.05))
    for i, corrector in enumerate((affine, chain)):
        pipe = build("wan")
        with stabilized(pipe, corrector) as handle:
            corrected = run(pipe)
            handle.save_pretrained(tmp_path / str(i))
        loaded = WanPipeline.from_pretrained(tmp_path / str(i))
        loaded.set_progress_bar_config(disable=True)
        again = stabilize_from_pretrained(loaded, tmp_path / str(i))
        try:
            assert type(again.corrector) is type(corrector)
            assert again.corrector.to_dict() == corrector.to_dict()
            torch.testing.assert_close(run(loaded), corrected, atol=1e-5, rtol=0)
        finally:
            again.undo()


def test_save_pretrained_refuses_a_stateful_corrector_before_writing(tmp_path):
    """A stateful corrector cannot be rebuilt from the settings file: one line, and no pipeline files left."""
    pipe = build("wan")
    with stabilized(pipe, Chain(DCW3, BandAnchor())) as handle:
        with pytest.raises(
            ValueError, match=r"corrector Chain: its member BandAnchor is stateful; savable: DCW"
        ):
            handle.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["pickle", "torch.save", "deepcopy"])
def test_stabilized_pipeline_pickles_and_comes_back_stabilized(how):
    pipe = build("wan")
    with stabilized(pipe, DCW3, drift_window=2) as handle:
        corrected = run(pipe)
        if how == "pickle":
            clone = pickle.loads(pickle.dumps(pipe))
        elif how == "torch.save":
            buf = io.BytesIO()
            torch.save(pipe, buf)
            clone = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
        else:
            clone = copy.deepcopy(pipe)
    restored = stabilizer(clone)
    assert restored is not None and restored is not handle and restored.drift_window == 2
    assert type(clone).__name__ == "WanPipeline" and isinstance(clone, WanPipeline)
    assert torch.equal(run(clone), corrected)
    restored.undo()
    assert type(clone) is WanPipeline and not is_tapped(clone.scheduler)
    assert not is_tapped(pipe.scheduler) and stabilizer(pipe) is None  # the original was undone on its own
