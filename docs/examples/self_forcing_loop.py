"""A Self-Forcing-style few-step causal loop, stabilized with vidfix's loop-level API (``vidfix.ARLoop``).

The loop has the shape of the public Self-Forcing inference code (``pipeline/causal_inference.py`` in
guandeh17/Self-Forcing; CausVid, Rolling Forcing and LongLive have the same one): the video is generated
chunk by chunk; each chunk starts from noise and is denoised in a few steps, each step predicting the clean
chunk x0 and re-noising it to the next level of a short list (1000, 750, 500, 250, warped by the flow shift);
then the model runs once more at t = 0 on the finished chunk to write it into the KV cache, which the next
chunks attend to. vidfix adds three calls, marked ``# vidfix``:

    loop.start_chunk(k, context=...)      before a chunk (stateful correctors see the clean context)
    x0 = loop.x0(x0, x, s, s_next)        between the x0 prediction and the re-noise
    loop.end_chunk(x0)                    after the chunk (drift tracker, stateful correctors)

Run it (a tiny random causal model on the CPU, a few seconds):

    python docs/examples/self_forcing_loop.py
    python docs/examples/self_forcing_loop.py --chunks 16 --low 0.02 --temporal -0.01

To use your own model, keep ``generate`` and replace ``TinyCausalModel``: it needs ``model(x, t, cache)``
returning the flow-matching velocity of a ``(B, F, C, H, W)`` chunk at per-frame timesteps ``t`` ``(B, F)``,
and ``model(x0, zeros, cache, write=True)`` appending the clean chunk to the cache. The tiny model has
random weights: what it prints shows the plumbing, not a result.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vidfix import DCW, ARLoop, DriftTracker

__all__ = ["KVCache", "TinyCausalModel", "generate", "main", "self_forcing_levels"]


def self_forcing_levels(levels: Sequence[int] = (1000, 750, 500, 250), *, shift: float = 5.0) -> list[float]:
    """Noise levels ``s`` of Self-Forcing's ``denoising_step_list`` with ``warp_denoising_step``.

    Self-Forcing indexes the shifted flow schedule ``s(u) = shift u / (1 + (shift - 1) u)`` at ``u = level / 1000``.
    """
    return [shift * (v / 1000) / (1 + (shift - 1) * (v / 1000)) for v in levels]


class KVCache:
    """Keys and values of the clean chunks written so far, one ``(B, F, D)`` pair per chunk.

    ``window`` chunks are kept (the first one stays as an attention sink, as in LongLive); -1 keeps all.
    """

    def __init__(self, window: int = -1) -> None:
        self.window = window
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []

    def append(self, k: Tensor, v: Tensor) -> None:
        self.keys.append(k)
        self.values.append(v)
        if 0 < self.window < len(self.keys):
            del self.keys[1], self.values[1]  # roll the window, keep the sink


class TinyCausalModel(nn.Module):
    """A stand-in causal video model: per-frame conv features, block-causal attention over frame tokens.

    ``forward(x, t, cache)`` returns the velocity ``v = eps - x0`` for a chunk ``x`` ``(B, F, C, H, W)``
    at timesteps ``t`` ``(B, F)`` in [0, 1000]; the chunk's frames attend to the cached clean chunks and to
    each other. ``write=True`` appends the chunk's keys and values to the cache instead.
    """

    def __init__(self, channels: int = 4, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.embed = nn.Conv2d(channels, dim, 3, padding=1)
        self.time = nn.Linear(1, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Conv2d(dim, channels, 3, padding=1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, x: Tensor, t: Tensor, cache: KVCache, *, write: bool = False) -> Tensor:
        B, F, C, H, W = x.shape
        h = self.embed(x.flatten(0, 1))  # (B*F, D, H, W)
        h = h + self.time(t.reshape(B * F, 1).float() / 1000)[:, :, None, None]
        tokens = h.mean((-2, -1)).view(B, F, -1)  # (B, F, D): one token per frame
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)  # (B, F, D) each
        if write:
            cache.append(k, v)
            return x
        keys = torch.cat([*cache.keys, k], 1)  # (B, cached + F, D)
        values = torch.cat([*cache.values, v], 1)  # (B, cached + F, D)
        att = torch.softmax(q @ keys.transpose(1, 2) / math.sqrt(q.shape[-1]), -1) @ values  # (B, F, D)
        h = torch.tanh(h + att.reshape(B * F, -1)[:, :, None, None])  # (B*F, D, H, W)
        return self.out(h).view(B, F, C, H, W) + x * 0.5  # (B, F, C, H, W)


@torch.no_grad()
def generate(
    model: TinyCausalModel,
    loop: ARLoop | None,
    *,
    num_chunks: int,
    chunk_frames: int = 3,
    shape: tuple[int, int, int] = (4, 8, 8),
    levels: Sequence[float] | None = None,
    window: int = -1,
    generator: torch.Generator,
    batch: int = 1,
) -> Tensor:
    """The few-step causal loop; returns the video latents ``(B, num_chunks * chunk_frames, C, H, W)``.

    ``loop=None`` runs the same loop without vidfix (the plain baseline).
    """
    sigmas = list(levels) if levels is not None else self_forcing_levels()
    cache = KVCache(window)
    chunks: list[Tensor] = []
    size = (batch, chunk_frames, *shape)  # (B, F, C, H, W), frames first as in Self-Forcing
    for k in range(num_chunks):
        if loop is not None:
            loop.start_chunk(k, context=chunks[-1] if chunks else None)  # vidfix
        x = torch.randn(size, generator=generator)
        for i, s in enumerate(sigmas):
            s_next = sigmas[i + 1] if i + 1 < len(sigmas) else 0.0
            t = torch.full((batch, chunk_frames), 1000.0 * s)
            # Predict x0 (flow matching: x_s = (1 - s) x0 + s eps, v = eps - x0).
            x0 = x - s * model(x, t, cache)
            if loop is not None:
                x0 = loop.x0(x0, x, s, s_next)  # vidfix: correct the data prediction per band
            # Re-noise to the next level with fresh noise (the last prediction is the chunk).
            if s_next > 0:
                x = (1 - s_next) * x0 + s_next * torch.randn(size, generator=generator)
        if loop is not None:
            loop.end_chunk(x0)  # vidfix: drift tracking, stateful correctors
        # Rerun at t = 0 to write the clean chunk into the KV cache.
        model(x0, torch.zeros(batch, chunk_frames), cache, write=True)
        chunks.append(x0)
    return torch.cat(chunks, 1)  # (B, num_chunks * F, C, H, W)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, default=8, help="chunks to generate (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--low", type=float, default=0.02, help="DCW low-band coefficient (default 0.02)")
    p.add_argument("--spatial", type=float, default=0.0, help="DCW spatial-detail coefficient")
    p.add_argument("--temporal", type=float, default=0.0, help="DCW temporal-detail coefficient")
    ns = p.parse_args(argv)
    torch.set_num_threads(1)
    model = TinyCausalModel().eval()

    runs = {}
    for name, corrector in (
        ("plain", None),
        ("vidfix DCW", DCW(low=ns.low, spatial=ns.spatial, temporal=ns.temporal)),
    ):
        loop = ARLoop(corrector, tracker=DriftTracker(), layout="BFCHW")
        video = generate(model, loop, num_chunks=ns.chunks, generator=torch.Generator().manual_seed(ns.seed))
        assert loop.tracker is not None
        runs[name] = (video, loop.tracker.curve("std"))
    print(f"drift of the per-channel std against chunk 0, per chunk ({ns.chunks} chunks, seed {ns.seed}):")
    for name, (_, curve) in runs.items():
        print(f"  {name:<11} " + " ".join(f"{v:.3f}" for v in curve))
    change = (runs["vidfix DCW"][0] - runs["plain"][0]).abs().max()
    print(f"largest change of a latent by the correction: {float(change):.3g}")
    print("(a tiny random model: this shows the plumbing, not a result)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
