"""The loop-level API (``vidfix.ARLoop``) in a Self-Forcing-shaped causal loop: exactness, direction, per-frame
levels, chunk hooks; the worked example in ``docs/examples`` runs here on its tiny causal model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from _tiny_models import ChunkRecorder

from vidfix import DCW, ARLoop, DriftTracker, EpsScaling, Identity
from vidfix.loop import flow_step_info

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "self_forcing_loop.py"


@pytest.fixture(scope="module")
def ex() -> ModuleType:
    spec = importlib.util.spec_from_file_location("self_forcing_loop", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["self_forcing_loop"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model(ex: ModuleType) -> torch.nn.Module:
    return ex.TinyCausalModel().eval()


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def plain_loop(
    model: torch.nn.Module, cache: object, levels: list[float], chunks: int, batch: int, seed: int
):
    """The Self-Forcing loop without vidfix, written out here (frames first, x0 then re-noise, cache at t=0)."""
    g, out = _gen(seed), []
    size = (batch, 3, 4, 8, 8)
    for _ in range(chunks):
        x = torch.randn(size, generator=g)
        for i, s in enumerate(levels):
            x0 = x - s * model(x, torch.full((batch, 3), 1000.0 * s), cache)
            if i + 1 < len(levels):
                x = (1 - levels[i + 1]) * x0 + levels[i + 1] * torch.randn(size, generator=g)
        model(x0, torch.zeros(batch, 3), cache, write=True)
        out.append(x0)
    return torch.cat(out, 1)


def test_identity_equals_the_plain_loop_bit_for_bit(ex: ModuleType, model: torch.nn.Module) -> None:
    levels = ex.self_forcing_levels()
    want = plain_loop(model, ex.KVCache(), levels, 4, 2, seed=7)
    for corrector in (None, Identity(), DCW(low=0.0), EpsScaling(scale=1.0)):
        loop = ARLoop(corrector, tracker=DriftTracker(), layout="BFCHW")
        got = ex.generate(model, loop, num_chunks=4, batch=2, generator=_gen(7))
        assert torch.equal(got, want), corrector
        assert loop.tracker is not None and len(loop.tracker.records) == 4
    corrected = ex.generate(
        model, ARLoop(DCW(low=0.05), layout="BFCHW"), num_chunks=4, batch=2, generator=_gen(7)
    )
    assert not torch.equal(corrected, want)


def test_worked_example_runs(ex: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert ex.main(["--chunks", "4", "--low", "0.03", "--temporal", "-0.01"]) == 0
    out = capsys.readouterr().out
    assert "plain" in out and "vidfix DCW" in out and "not a result" in out


def test_self_forcing_levels_follow_the_warped_list(ex: ModuleType) -> None:
    # Self-Forcing's warp: a table of shifted sigmas over 1000 training steps, indexed at 1000 - level.
    u = torch.linspace(1.0, 0.0, 1001, dtype=torch.float64)[:-1]
    table = torch.cat([5.0 * u / (1 + 4.0 * u), torch.zeros(1, dtype=torch.float64)])
    want = table[1000 - torch.tensor([1000, 750, 500, 250])].tolist()
    assert ex.self_forcing_levels() == pytest.approx(want, abs=1e-12)


def _low3d(d: torch.Tensor) -> torch.Tensor:
    """The level-1 3D Haar low band of ``d`` (even sizes): the 2x2x2 block mean, spread back."""
    pooled = F.avg_pool3d(d, 2)  # (B, C, F/2, H/2, W/2)
    return pooled.repeat_interleave(2, 2).repeat_interleave(2, 3).repeat_interleave(2, 4)


@pytest.mark.parametrize("lam", [0.05, -0.05])
def test_low_band_correction_moves_x0_toward_the_current_noise_by_eq17(lam: float) -> None:
    g = _gen(1)
    x0, x = torch.randn(2, 3, 4, 8, 8, generator=g), torch.randn(2, 3, 4, 8, 8, generator=g)
    s, s_next = 0.8, 0.6
    loop = ARLoop(DCW(low=lam, low_schedule="constant"))
    loop.start_chunk(0)
    got = loop.x0(x0, x, s, s_next)
    # Eq. 17 in x0 space on a flow step: x0' = x0 + lam r / (1 - r) (x - x0) in the low band, r = s_next / s.
    r = s_next / s
    want = x0 + lam * r / (1 - r) * _low3d(x - x0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # Direction: along the low band of the current noise estimate, with the sign of lam; details untouched.
    change = got - x0
    assert float((change * _low3d(x - x0)).sum()) * lam > 0
    torch.testing.assert_close(change - _low3d(change), torch.zeros_like(change), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["BCFHW", "BFCHW"])
def test_all_bands_equal_is_an_euler_step_to_a_shifted_level(layout: str) -> None:
    """DESIGN 1: on a flow Euler step, pixel-space DCW equals an Euler step to ``(1 + lam) s_next``."""
    g, lam, s, s_next = _gen(2), 0.04, 0.7, 0.45
    x0, x = torch.randn(1, 4, 4, 6, 6, generator=g), torch.randn(1, 4, 4, 6, 6, generator=g)
    flat = {f"{b}_schedule": "constant" for b in ("low", "spatial", "temporal")}
    loop = ARLoop(DCW(low=lam, spatial=lam, temporal=lam, **flat), layout=layout)  # type: ignore[arg-type]
    loop.start_chunk(0)
    x0c = loop.x0(x0, x, s, s_next)
    euler = x0c + s_next * (x - x0c) / s
    shifted = x0 + (1 + lam) * s_next * (x - x0) / s
    torch.testing.assert_close(euler, shifted, atol=1e-5, rtol=1e-5)


def test_rollout_change_follows_the_coefficient_sign_and_size(ex: ModuleType, model: torch.nn.Module) -> None:
    def run(lam: float) -> torch.Tensor:
        loop = ARLoop(DCW(low=lam, low_schedule="constant"), layout="BFCHW")
        return ex.generate(model, loop, num_chunks=3, generator=_gen(3)).double()

    base = run(0.0)
    d_plus, d_minus, d_double = run(1e-3) - base, run(-1e-3) - base, run(2e-3) - base
    assert float(d_plus.abs().max()) > 1e-4
    # First order in lam: opposite signs give opposite changes, twice the coefficient twice the change.
    assert float((d_plus + d_minus).norm()) < 0.05 * float(d_plus.norm())
    assert float((d_double - 2 * d_plus).norm()) < 0.05 * float(d_plus.norm())


# -- per-frame noise levels -------------------------------------------------------------------------------


def _pair(seed: int = 4, shape: tuple[int, ...] = (2, 3, 4, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def _corrected(
    corrector: object, x0: torch.Tensor, x: torch.Tensor, s: object, s_next: object
) -> torch.Tensor:
    loop = ARLoop(corrector)  # type: ignore[arg-type]
    loop.start_chunk(0)
    return loop.x0(x0, x, s, s_next)  # type: ignore[arg-type]


def test_equal_per_frame_levels_equal_the_scalar_level() -> None:
    x0, x = _pair()
    dcw = DCW(low=0.05, spatial=-0.02, temporal=0.03)
    want = _corrected(dcw, x0, x, 0.8, 0.6)
    for s, s_next in [
        (torch.full((4,), 0.8), torch.full((4,), 0.6)),
        (torch.full((2, 4), 0.8), torch.full((2, 4), 0.6)),
        (torch.full((4,), 0.8), 0.6),
    ]:
        torch.testing.assert_close(_corrected(dcw, x0, x, s, s_next), want, atol=1e-6, rtol=1e-6)


def test_per_frame_levels_correct_each_frame_at_its_own_level() -> None:
    x0, x = _pair()
    dcw = DCW(low=0.05, spatial=0.02, dims="2d")
    s = torch.tensor([[1.0, 0.8, 0.6, 0.4], [0.9, 0.7, 0.5, 0.3]])
    s_next = s - 0.15
    got = _corrected(dcw, x0, x, s, s_next)
    for b in range(2):
        for f in range(4):
            one = _corrected(
                dcw,
                x0[b : b + 1, :, f : f + 1],
                x[b : b + 1, :, f : f + 1],
                float(s[b, f]),
                float(s_next[b, f]),
            )
            torch.testing.assert_close(got[b : b + 1, :, f : f + 1], one, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dims", ["3d", "2d"])
def test_frames_whose_level_does_not_go_down_are_left_alone(dims: str) -> None:
    x0, x = _pair()
    s = torch.tensor([0.0, 1.0, 0.7, 0.5])  # clean, held at 1, moving, moving
    s_next = torch.tensor([0.0, 1.0, 0.5, 0.25])
    got = _corrected(DCW(low=0.1, spatial=0.05, temporal=0.05, dims=dims), x0, x, s, s_next)  # type: ignore[arg-type]
    assert torch.isfinite(got).all()
    assert torch.equal(got[:, :, :2], x0[:, :, :2])
    assert not torch.equal(got[:, :, 2:], x0[:, :, 2:])
    # Nothing moves at all: the same tensor comes back.
    assert _corrected(DCW(low=0.1), x0, x, torch.full((4,), 0.5), torch.full((4,), 0.5)) is x0
    assert _corrected(DCW(low=0.1), x0, x, 0.5, 0.5) is x0


@torch.no_grad()
def test_staggered_levels_loop_identity_equals_plain(ex: ModuleType, model: torch.nn.Module) -> None:
    """A Rolling-Forcing-shaped chunk: its frames sit at staggered levels that all go down one notch a step."""
    base = torch.tensor([1.0, 0.85, 0.7])

    def run(loop: ARLoop | None) -> torch.Tensor:
        g, cache = _gen(5), ex.KVCache()
        x = torch.randn(1, 3, 4, 8, 8, generator=g)
        if loop is not None:
            loop.start_chunk(0)
        for i in range(4):
            s, s_next = (base - 0.2 * i).clamp_min(0), (base - 0.2 * (i + 1)).clamp_min(0)
            x0 = x - s.view(1, 3, 1, 1, 1) * model(x, 1000 * s.expand(1, 3), cache)
            if loop is not None:
                x0 = loop.x0(x0, x, s, s_next)
            x = (1 - s_next.view(1, 3, 1, 1, 1)) * x0 + s_next.view(1, 3, 1, 1, 1) * torch.randn(
                x.shape, generator=g
            )
        return x

    plain = run(None)
    assert torch.equal(run(ARLoop(layout="BFCHW")), plain)
    corrected = run(ARLoop(DCW(low=0.05, temporal=0.02), layout="BFCHW"))
    assert torch.isfinite(corrected).all() and not torch.equal(corrected, plain)


def test_bad_levels_are_refused() -> None:
    x0, x = _pair()
    loop = ARLoop(DCW(low=0.1))
    loop.start_chunk(0)
    with pytest.raises(ValueError, match=r"s must be a noise level in \[0, 1\]"):
        loop.x0(x0, x, 500.0, 0.2)
    with pytest.raises(ValueError, match=r"s_next has shape \(3,\)"):
        loop.x0(x0, x, 0.5, torch.zeros(3))
    with pytest.raises(ValueError, match=r"x .* and x0 .* must have the same shape"):
        loop.x0(x0, x[:, :, :2], 0.5, 0.2)


# -- chunk hooks ------------------------------------------------------------------------------------------


def test_chunk_aware_corrector_and_tracker_see_bcfhw_chunks(ex: ModuleType, model: torch.nn.Module) -> None:
    rec, seen = ChunkRecorder(), []
    loop = ARLoop(
        rec, tracker=DriftTracker(), on_chunk=lambda c, index, **kw: seen.append((index, kw)), layout="BFCHW"
    )
    video = ex.generate(model, loop, num_chunks=3, generator=_gen(0))  # (1, 9, C, H, W)
    assert [(kind, i) for kind, i, _ in rec.calls] == [(k, i) for i in range(3) for k in ("start", "end")]
    assert rec.calls[0][2] is None
    torch.testing.assert_close(rec.calls[2][2], video[:, 0:3].transpose(1, 2))  # chunk 1's context: chunk 0
    torch.testing.assert_close(rec.calls[5][2], video[:, 6:9].transpose(1, 2))
    assert loop.tracker is not None and [r.index for r in loop.tracker.records] == [0, 1, 2]
    assert loop.tracker.records[0].frames == 3 and seen == [(0, {}), (1, {}), (2, {})]
    # A new rollout (chunk 0 again) starts a new drift record.
    ex.generate(model, loop, num_chunks=2, generator=_gen(1))
    assert [r.index for r in loop.tracker.records] == [0, 1]


def test_calls_out_of_order_are_refused() -> None:
    x0, x = _pair()
    loop = ARLoop(DCW(low=0.1))
    with pytest.raises(RuntimeError, match="start_chunk"):
        loop.x0(x0, x, 0.5, 0.2)
    loop.start_chunk(0)
    with pytest.raises(RuntimeError, match="not ended"):
        loop.start_chunk(1)
    loop.end_chunk(x0)
    with pytest.raises(ValueError, match="expected chunk 0 or 1, got 3"):
        loop.start_chunk(3)
    with pytest.raises(RuntimeError, match="without start_chunk"):
        loop.end_chunk(x0)
    with pytest.raises(TypeError, match="corrector must be callable"):
        ARLoop("dcw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layout"):
        ARLoop(layout="BHWC")  # type: ignore[arg-type]


def test_flow_step_info_is_the_flow_parameterisation() -> None:
    step = flow_step_info(0.8, 0.6, index=1, num_steps=4)
    assert (step.alpha, step.beta, step.alpha_next, step.beta_next, step.s) == pytest.approx(
        (0.2, 0.8, 0.4, 0.6, 0.8)
    )
    assert step.param == "flow" and step.c1 == pytest.approx(0.75) and step.c0 == pytest.approx(0.25)


def test_a_folded_corrector_form_is_passed_through_for_the_tap() -> None:
    """A tap may prefer a corrector's ``correct_output`` (the correction folded into the solver's tensor)."""

    class Folded(Identity):
        def correct_output(
            self, v: torch.Tensor, x: torch.Tensor, step: object, *, a: float, b: float
        ) -> torch.Tensor:
            return v * a + b

    class Unfolded:  # a corrector with only the x0 form
        def __call__(self, x0: torch.Tensor, x: torch.Tensor, step: object) -> torch.Tensor:
            return x0

    assert ARLoop(Unfolded()).correct_output is None and ARLoop().correct_output is None
    assert ARLoop(Identity()).correct_output is not None  # Identity has the folded form too (v' = v)
    loop = ARLoop(Folded())
    fold = loop.correct_output
    assert fold is not None
    v = torch.ones(1, 1, 2, 2, 2)
    with pytest.raises(RuntimeError, match="start_chunk"):
        fold(v, v, flow_step_info(0.5, 0.25), a=2.0, b=1.0)
    loop.start_chunk(0)
    assert torch.equal(fold(v, v, flow_step_info(0.5, 0.25), a=2.0, b=1.0), v * 3) and loop.steps == 1
