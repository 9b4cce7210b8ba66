"""Training: a few steps on a tiny config run, are seeded, and resume bit-identically after a kill."""

import json
from dataclasses import replace

import pytest
import torch
from vidfix.pipelines.factory import sprite_process_config
from vidfix.pipelines.reference.data import SpriteVideoConfig
from vidfix.pipelines.reference.model import ReferenceVideoModel
from vidfix.pipelines.reference.train import TrainConfig, train_reference

TINY = dict(chunk_frames=2, max_context_frames=2, patch_size=2, block_channels=(8, 16), layers_per_block=1,
            attention_heads=2, norm_groups=4)  # fmt: skip


def _cfg(tmp_path, name: str, **kw) -> TrainConfig:
    base = dict(output_dir=str(tmp_path / name), steps=4, batch_size=2, checkpoint_every=2, warmup_steps=2,
                model=TINY, data=SpriteVideoConfig(height=16, width=16))  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


class _Killed(RuntimeError):
    pass


def test_train_runs_saves_and_resumes_bit_identically(tmp_path) -> None:
    whole = train_reference(_cfg(tmp_path, "whole"), progress=False)
    assert len(whole.losses) == 4 and all(torch.isfinite(torch.tensor(whole.losses)))
    files = {p.name for p in whole.model_dir.iterdir()}
    assert {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "scheduler_config.json",
        "process_config.json",
    } <= files
    assert sprite_process_config(whole.model_dir, 16) == SpriteVideoConfig(height=16, width=16)
    assert json.loads((tmp_path / "whole" / "losses.json").read_text()) == whole.losses

    cfg = _cfg(tmp_path, "killed")

    def kill(step: int, loss: float) -> None:
        if step == 2:  # the checkpoint after step index 1 exists; this step's work is lost
            raise _Killed

    with pytest.raises(_Killed):
        train_reference(cfg, progress=False, on_step=kill)
    resumed = train_reference(cfg, progress=False)
    assert resumed.losses == whole.losses  # same loss sequence, bit for bit
    a = ReferenceVideoModel.from_pretrained(whole.model_dir).state_dict()
    b = ReferenceVideoModel.from_pretrained(resumed.model_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_seed_changes_the_run(tmp_path) -> None:
    a = train_reference(_cfg(tmp_path, "a", steps=2), progress=False)
    b = train_reference(_cfg(tmp_path, "b", steps=2, seed=1), progress=False)
    assert a.losses != b.losses


def test_resume_with_another_config_is_refused(tmp_path) -> None:
    cfg = _cfg(tmp_path, "run", steps=2)
    train_reference(cfg, progress=False)
    with pytest.raises(ValueError, match="different training config"):
        train_reference(replace(cfg, lr=1e-2), progress=False)


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(output_dir="x", steps=0)
    with pytest.raises(ValueError, match="probabilities"):
        TrainConfig(output_dir="x", context_drop=1.5)


@pytest.mark.parametrize("level", [0.0, 0.2])
def test_context_noise_augments_only_the_context(level: float) -> None:
    from vidfix.pipelines.reference.train import flow_matching_loss

    model = ReferenceVideoModel(sample_size=16, **TINY)
    seen = {}

    def spy(x, t, context, present, *extra):  # extra: context_sigma, sink, sink_on
        seen["context"] = context.clone()
        return torch.zeros_like(x)

    model.forward_padded = spy  # type: ignore[method-assign]
    clips = torch.rand(8, 3, 4, 16, 16) * 2 - 1
    cfg = TrainConfig(output_dir="x", context_noise=level)
    flow_matching_loss(model, clips, torch.Generator().manual_seed(0), cfg)
    diff = seen["context"] - clips[:, :, :2]
    if level == 0:
        assert torch.equal(diff, torch.zeros_like(diff))
    else:  # (1 - a) c + a eps with a <= level: moved, but by at most about level * (|c| + |eps|)
        per_clip = diff.pow(2).mean((1, 2, 3, 4)).sqrt()
        assert (per_clip > 0).all() and (per_clip < 1.5 * level * 1.5).all()
        assert per_clip.std() > 0  # a differs per clip


def test_context_noise_must_be_a_level() -> None:
    with pytest.raises(ValueError, match="context_noise"):
        TrainConfig(output_dir="x", context_noise=1.0)
