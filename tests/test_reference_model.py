"""The reference denoiser: protocol, config round trip, clear errors, and the shipped weights."""

import json

import pytest
import torch
from vidfix.pipelines import REFERENCE_WEIGHTS_DIR, load_reference_model, reference_scheduler
from vidfix.pipelines.reference.data import SpriteVideoConfig, reference_videos
from vidfix.pipelines.reference.model import ReferenceVideoModel

from vidfix.protocols import Denoiser


def _tiny(seed: int = 0) -> ReferenceVideoModel:
    model = ReferenceVideoModel.tiny().reset_parameters(torch.Generator().manual_seed(seed))
    # Zero-initialised output layers would make every output 0; perturb them so outputs are informative.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _inputs(
    model: ReferenceVideoModel, k: int, batch: int = 2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = model.config
    g = torch.Generator().manual_seed(3)
    x = torch.randn(batch, 3, c.chunk_frames, c.sample_size, c.sample_size, generator=g)
    ctx = torch.randn(batch, 3, k, c.sample_size, c.sample_size, generator=g)
    return x, torch.tensor(400.0), ctx


def test_is_a_denoiser_with_the_right_shape() -> None:
    model = _tiny()
    assert isinstance(model, Denoiser)
    x, t, ctx = _inputs(model, 2)
    with torch.no_grad():
        for context in (None, ctx[:, :, :0], ctx[:, :, 1:], ctx):
            out = model(x, t, context=context)
            assert out.shape == x.shape and torch.isfinite(out).all()
        # (B,) timesteps equal a shared scalar one; no context equals an empty one.
        assert torch.allclose(model(x, torch.tensor([400.0, 400.0]), context=ctx), model(x, t, context=ctx))
        assert torch.equal(model(x, t), model(x, t, context=ctx[:, :, :0]))
        assert not torch.allclose(model(x, t), model(x, t, context=ctx))


def test_batch_rows_are_independent() -> None:
    model = _tiny()
    x, _, ctx = _inputs(model, 2, batch=3)
    with torch.no_grad():
        full = model(x, torch.tensor([100.0, 400.0, 900.0]), context=ctx)
        one = model(x[1:2], torch.tensor(400.0), context=ctx[1:2])
    assert torch.allclose(full[1:2], one, atol=1e-5)


def test_forward_padded_matches_forward() -> None:
    model = _tiny()
    x, t, ctx = _inputs(model, 1)
    K = model.config.max_context_frames
    padded = torch.cat([torch.randn(2, 3, K - 1, 16, 16), ctx], 2)  # garbage in absent slots is ignored
    present = torch.tensor([[False, True], [False, True]])
    with torch.no_grad():
        assert torch.allclose(
            model.forward_padded(x, t.expand(2), padded, present), model(x, t, context=ctx), atol=1e-6
        )


def test_save_load_round_trip(tmp_path) -> None:
    model = _tiny()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["chunk_frames"] == 4 and config["max_context_frames"] == 2
    loaded = ReferenceVideoModel.from_pretrained(tmp_path).eval()

    def public(c: dict) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in c.items() if not k.startswith("_")}

    assert public(loaded.config) == public(model.config)
    x, t, ctx = _inputs(model, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x, t, context=ctx), model(x, t, context=ctx))


def test_reset_parameters_is_seeded() -> None:
    a, b, c = (
        ReferenceVideoModel.tiny().reset_parameters(torch.Generator().manual_seed(s)) for s in (1, 1, 2)
    )
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_bad_inputs_raise_clear_errors() -> None:
    model = _tiny()
    x, t, ctx = _inputs(model, 2)
    with pytest.raises(ValueError, match="chunk_frames=4"):
        model(x[:, :, :3], t)
    with pytest.raises(ValueError, match="sample_size=16"):
        model(torch.randn(2, 3, 4, 32, 32), t)
    with pytest.raises(ValueError, match="rank"):
        model(x[:, :, 0], t)
    with pytest.raises(ValueError, match="at most 2"):
        model(x, t, context=torch.randn(2, 3, 3, 16, 16))
    with pytest.raises(ValueError, match="context has shape"):
        model(x, t, context=ctx[:1])
    with pytest.raises(FloatingPointError, match="NaN"):
        model(x.clone().fill_(float("nan")), t)
    bad = ctx.clone()
    bad[0, 0, 0, 0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="context"):
        model(x, t, context=bad)
    with pytest.raises(ValueError, match="t must be"):
        model(x, torch.tensor([1.0, 2.0, 3.0]), context=ctx)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        model(x, 400.0, context=ctx)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword"):
        model(x, t, encoder_hidden_states=ctx)
    with pytest.raises(ValueError, match="multiple"):
        ReferenceVideoModel.tiny(sample_size=18)


# --- the shipped weights -------------------------------------------------------------------------------


def test_shipped_weights_load_offline_and_fit_the_budget() -> None:
    files = {p.name: p.stat().st_size for p in REFERENCE_WEIGHTS_DIR.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"} <= set(files)
    assert sum(files.values()) <= 20 * 1024 * 1024
    model = load_reference_model()
    c = model.config
    x = torch.randn(
        1, 3, c.chunk_frames, c.sample_size, c.sample_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        out = model(
            x,
            torch.tensor(500.0),
            context=torch.zeros(1, 3, c.max_context_frames, c.sample_size, c.sample_size),
        )
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert reference_scheduler("euler").config.shift == reference_scheduler("unipc").config.flow_shift


def test_shipped_model_denoises_real_video() -> None:
    """At moderate noise the x0 prediction from a real noised chunk is far closer to the truth than the input."""
    model = load_reference_model()
    c = model.config
    K, Fr, S = c.max_context_frames, c.chunk_frames, c.sample_size
    clips = reference_videos([0, 1], K + Fr, start=[10, 300], config=SpriteVideoConfig(height=S, width=S))
    context, x0 = clips[:, :, :K], clips[:, :, K:]
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    s = 0.5
    x_s = (1 - s) * x0 + s * eps
    with torch.no_grad():
        v = model(x_s, torch.tensor(s * 1000), context=context)
    x0_hat = x_s - s * v
    err_in = (x_s - x0).pow(2).mean()
    err_out = (x0_hat - x0).pow(2).mean()
    assert float(err_out) < 0.1 * float(err_in)
