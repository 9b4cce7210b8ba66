"""LTX token layout: the same packing as diffusers, conditioning tokens left out, per-token coefficients."""

from __future__ import annotations

import pytest
import torch
from _tiny_pipelines import build, call_kwargs
from diffusers import LTXPipeline
from vidfix.pipelines import LTXTokens, stabilized
from vidfix.pipelines.ltx import latent_grid

from vidfix import Identity

SIZES = [(1, 1), (2, 1), (2, 2), (1, 2)]  # (patch_size, patch_size_t)


@pytest.mark.parametrize(("p", "pt"), SIZES)
def test_matches_diffusers_pack_and_unpack(p, pt):
    x = torch.randn(2, 3, 4, 4, 6)  # (B, C, F, H, W)
    packed = LTXPipeline._pack_latents(x, p, pt)  # (B, F/pt*H/p*W/p, C*pt*p*p)
    layout = LTXTokens(patch_size=p, patch_size_t=pt, grid=(4 // pt, 4 // p, 6 // p))
    assert torch.equal(layout.to_bcfhw(packed), x)
    assert torch.equal(layout.from_bcfhw(x), packed)
    assert torch.equal(LTXPipeline._unpack_latents(packed, 4 // pt, 4 // p, 6 // p, p, pt), x)


@pytest.mark.parametrize(("p", "pt"), SIZES)
def test_prefix_tokens_are_left_out_and_come_back_zero(p, pt):
    x = torch.randn(1, 2, 2, 4, 4)
    grid = (2 // pt, 4 // p, 4 // p)
    packed = LTXPipeline._pack_latents(x, p, pt)
    extra = torch.randn(1, 5, packed.shape[2])
    layout = LTXTokens(patch_size=p, patch_size_t=pt, grid=grid, prefix_tokens=5)
    assert torch.equal(layout.to_bcfhw(torch.cat([extra, packed], dim=1)), x)
    back = layout.from_bcfhw(x)
    assert back.shape == (1, 5 + packed.shape[1], packed.shape[2])
    assert torch.equal(back[:, :5], torch.zeros_like(extra)) and torch.equal(back[:, 5:], packed)


@pytest.mark.parametrize(("p", "pt"), SIZES)
def test_per_token_coefficients_cover_their_patch(p, pt):
    grid = (2, 2, 3)
    layout = LTXTokens(patch_size=p, patch_size_t=pt, grid=grid, prefix_tokens=1)
    n = 1 + 2 * 2 * 3
    coef = torch.arange(2 * n, dtype=torch.float32).reshape(2, n, 1)  # (B, N, 1), one value per token
    out = layout.to_bcfhw(coef)
    assert out.shape == (2, 1, 2 * pt, 2 * p, 3 * p)
    values = torch.arange(2 * n, dtype=torch.float32).reshape(2, n)[:, 1:].reshape(2, 1, *grid)
    expected = values.repeat_interleave(pt, 2).repeat_interleave(p, 3).repeat_interleave(p, 4)
    assert torch.equal(out, expected)
    assert layout.to_bcfhw(torch.ones(2, 1, 1)).shape == (2, 1, 1, 1, 1)  # one value per sample


def test_grid_must_be_known_and_fit():
    with pytest.raises(RuntimeError, match="latent grid"):
        LTXTokens().to_bcfhw(torch.zeros(1, 8, 4))
    with pytest.raises(ValueError, match="cannot hold"):
        LTXTokens(grid=(2, 2, 2)).to_bcfhw(torch.zeros(1, 7, 4))


def test_grid_follows_each_run():
    pipe = build("ltx")
    assert latent_grid(9, 32, 32, temporal_ratio=pipe.vae_temporal_compression_ratio,
                       spatial_ratio=pipe.vae_spatial_compression_ratio) == (3, 8, 8)  # fmt: skip
    with stabilized(pipe, Identity()) as handle:
        pipe(**call_kwargs("ltx"))
        assert handle._layout.grid == (3, 8, 8) and handle._layout.prefix_tokens == 0
        pipe(**(call_kwargs("ltx") | {"num_frames": 17, "height": 64}))
        assert handle._layout.grid == (5, 16, 8)
    cond = build("ltx_condition")
    with stabilized(cond, Identity()) as handle:
        cond(**call_kwargs("ltx_condition"))
        assert (
            handle._layout.grid == (3, 8, 8) and handle._layout.prefix_tokens == 64
        )  # one extra image frame
