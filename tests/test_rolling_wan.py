"""Rolling-KV-cache Wan (diffusers PR #13681's interface) through the loop-level API.

The installed diffusers has no rolling KV cache for Wan: that is checked (one line). The adapter is then run
against stand-ins with the PR's interface: a cache with append / overwrite modes and a Wan transformer whose
``forward`` takes ``frame_offset`` and ``attention_kwargs={"kv_cache": cache}`` (here the cache keeps each
chunk's input frames and the tiny Wan attends over them, which is what a KV cache computes).
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import pytest
import torch
from _tiny_pipelines import _wan_transformer_kwargs, build
from diffusers import WanPipeline, WanTransformer3DModel
from vidfix.pipelines.rolling_wan import (
    RollingKVUnavailable,
    RollingWan,
    rolling_kv_support,
    self_forcing_levels,
    stabilize_rolling,
)

from vidfix import DCW, ARLoop, DriftTracker

WAN = importlib.import_module("diffusers.models.transformers.transformer_wan")


def test_the_installed_diffusers_says_so_in_one_line() -> None:
    reason = rolling_kv_support()
    if hasattr(WAN, "WanRollingKVCache"):  # the PR has landed in this diffusers
        pytest.skip("this diffusers has WanRollingKVCache; the stand-in tests below cover the adapter")
    assert reason is not None and "\n" not in reason and "PR #13681" in reason and "vidfix.ARLoop" in reason
    pipe = build("wan")
    with pytest.raises(RollingKVUnavailable) as info:
        stabilize_rolling(pipe, DCW(low=0.01))
    assert str(info.value) == reason
    assert not hasattr(type(pipe), "_vidfix_handle")  # nothing was installed


class FakeRollingKVCache:
    """The PR's cache interface; an entry per chunk: (frame_offset, frames, per-frame timestep)."""

    instances: ClassVar[list[FakeRollingKVCache]] = []

    def __init__(self, num_blocks: int, window_size: int = -1) -> None:
        self.num_blocks, self.window_size = num_blocks, window_size
        self.entries: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.overwrite_newest = False
        self.calls: list[tuple[str, int]] = []
        FakeRollingKVCache.instances.append(self)

    def enable_append_mode(self) -> None:
        self.overwrite_newest = False

    def enable_overwrite_mode(self) -> None:
        self.overwrite_newest = True

    def reset(self) -> None:
        self.snapshot = list(self.entries)
        self.entries = []

    def write(self, offset: int, x: torch.Tensor, t: torch.Tensor) -> None:
        self.calls.append(("overwrite" if self.overwrite_newest else "append", offset))
        if self.overwrite_newest:
            assert self.entries and self.entries[-1][0] == offset, "overwrite must hit the newest chunk"
            self.entries[-1] = (offset, x, t)
        else:
            self.entries.append((offset, x, t))
            if 0 < self.window_size < len(self.entries):
                del self.entries[0]


class CausalWan(WanTransformer3DModel):
    """A Wan transformer with the PR's ``frame_offset`` / ``kv_cache`` call: attends over the cached chunks."""

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        frame_offset: int = 0,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> Any:
        cache = (attention_kwargs or {})["kv_cache"]
        B, _, F, H, W = hidden_states.shape
        cache.write(frame_offset, hidden_states, timestep)
        frames = torch.cat([e[1] for e in cache.entries], 2)  # (B, C, cached + F, H, W)
        tokens = (H // 2) * (W // 2)
        per_token = torch.cat([e[2][:, None].expand(B, e[1].shape[2] * tokens) for e in cache.entries], 1)
        out = super().forward(frames, per_token, encoder_hidden_states, return_dict=False)[0]
        return (out[:, :, -F:],)


@pytest.fixture
def causal_pipe(monkeypatch: pytest.MonkeyPatch) -> WanPipeline:
    monkeypatch.setattr(WAN, "WanRollingKVCache", FakeRollingKVCache, raising=False)
    monkeypatch.setattr(WAN, "WanTransformer3DModel", CausalWan)
    FakeRollingKVCache.instances = []
    torch.manual_seed(0)
    model = CausalWan(**_wan_transformer_kwargs()).eval()
    return WanPipeline(**(build("wan").components | {"transformer": model}))


@torch.no_grad()
def reference_loop(pipe: WanPipeline, embeds: torch.Tensor, chunks: int, seed: int) -> torch.Tensor:
    """The PR author's reference loop, written out: append at step 0, overwrite after, clean write at t = 0."""
    cache = FakeRollingKVCache(num_blocks=len(pipe.transformer.blocks))
    g, levels, out = torch.Generator().manual_seed(seed), self_forcing_levels(), []
    shape = (1, 16, 3, 2, 2)

    def run(x: torch.Tensor, t: float, offset: int, overwrite: bool) -> torch.Tensor:
        cache.enable_overwrite_mode() if overwrite else cache.enable_append_mode()
        kw = {"frame_offset": offset, "attention_kwargs": {"kv_cache": cache}, "return_dict": False}
        return pipe.transformer(x, torch.full((1,), t), embeds, **kw)[0]

    for k in range(chunks):
        x = torch.randn(shape, generator=g)
        for i, s in enumerate(levels):
            x0 = x - s * run(x, 1000 * s, 3 * k, overwrite=i > 0)
            if i + 1 < len(levels):
                x = (1 - levels[i + 1]) * x0 + levels[i + 1] * torch.randn(shape, generator=g)
        run(x0, 0.0, 3 * k, overwrite=True)
        out.append(x0)
    return torch.cat(out, 2)


def _embeds(pipe: WanPipeline) -> torch.Tensor:
    return pipe.encode_prompt(
        "a cat", do_classifier_free_guidance=False, max_sequence_length=8, device="cpu"
    )[0]


def test_plain_loop_equals_the_reference_loop_and_the_cache_holds_clean_chunks(
    causal_pipe: WanPipeline,
) -> None:
    assert rolling_kv_support() is None
    embeds = _embeds(causal_pipe)
    want = reference_loop(causal_pipe, embeds, 3, seed=4)
    handle = RollingWan(causal_pipe, ARLoop())
    got = handle.latents(
        embeds, num_chunks=3, height=16, width=16, generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(got, want)
    cache = FakeRollingKVCache.instances[-1]
    assert [e[0] for e in cache.snapshot] == [0, 3, 6]  # one entry per chunk, at its frame offset
    for k, (_, frames, t) in enumerate(cache.snapshot):
        assert torch.equal(frames, got[:, :, 3 * k : 3 * k + 3]) and float(t.abs().max()) == 0.0
    modes = [m for m, _ in cache.calls]
    assert modes[:6] == ["append", "overwrite", "overwrite", "overwrite", "overwrite", "append"]


def test_stabilize_rolling_corrects_and_tracks(causal_pipe: WanPipeline) -> None:
    embeds = _embeds(causal_pipe)
    plain = RollingWan(causal_pipe).latents(
        embeds, num_chunks=3, height=16, width=16, generator=torch.Generator().manual_seed(1)
    )
    handle = stabilize_rolling(causal_pipe, DCW(low=0.05, temporal=0.02), track_drift=True)
    assert isinstance(handle, RollingWan) and isinstance(handle.loop.tracker, DriftTracker)
    got = handle.latents(
        embeds, num_chunks=3, height=16, width=16, generator=torch.Generator().manual_seed(1)
    )
    assert not torch.equal(got, plain) and torch.isfinite(got).all()
    assert [r.index for r in handle.loop.tracker.records] == [0, 1, 2]
    again = stabilize_rolling(causal_pipe, DCW(low=0.05, temporal=0.02))
    assert torch.equal(
        again.latents(embeds, num_chunks=3, height=16, width=16, generator=torch.Generator().manual_seed(1)),
        got,
    )


def test_guidance_uses_two_caches_and_the_prompt_call_decodes(causal_pipe: WanPipeline) -> None:
    handle = RollingWan(causal_pipe, guidance_scale=3.0)
    with pytest.raises(ValueError, match="needs negative_prompt_embeds"):
        handle.latents(_embeds(causal_pipe), num_chunks=1, height=16, width=16, generator=torch.Generator())
    FakeRollingKVCache.instances = []
    frames = handle(
        "a cat", negative_prompt="negative", num_chunks=2, height=16, width=16, max_sequence_length=8
    )
    assert len(FakeRollingKVCache.instances) == 2
    assert frames.shape[1:] == (16, 16, 3) and 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    with pytest.raises(ValueError, match="decreasing noise levels"):
        RollingWan(causal_pipe, levels=[0.5, 0.9])
    with pytest.raises(TypeError, match="runs a WanPipeline"):
        RollingWan(build("skyreels_df"))


def test_a_cache_with_another_interface_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a later revision of the PR (a cache with ``configure_write`` instead of the append/overwrite
    modes) passed the support check and failed inside the loop with an AttributeError."""

    class OtherCache:
        def configure_write(self, write_mode: str, absolute_token_offset: int) -> None: ...

    monkeypatch.setattr(WAN, "WanRollingKVCache", OtherCache, raising=False)
    monkeypatch.setattr(WAN, "WanTransformer3DModel", CausalWan)
    reason = rolling_kv_support()
    assert reason is not None and "\n" not in reason
    assert "enable_append_mode, enable_overwrite_mode, reset" in reason and "#13681" in reason
