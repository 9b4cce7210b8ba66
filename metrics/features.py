"""Subject and background consistency (VBench) from DINO and CLIP image features, through ``transformers``.

VBench (Huang et al., CVPR 2024) scores a video's consistency from image features ``f_t`` of its frames:
each frame after the first gets ``(max(0, cos(f_t, f_(t-1))) + max(0, cos(f_t, f_0))) / 2`` and the video the
mean over frames. **Subject consistency** uses DINO ViT-B/16 features (``facebook/dino-vitb16``; frames resized
to a 224-pixel short side, whole frame, ImageNet normalisation, the class token); **background consistency**
uses CLIP ViT-B/32 image embeddings (``openai/clip-vit-base-patch32``; 224-pixel short side, centre crop, CLIP
normalisation). :class:`FeatureConsistency` gives that value per frame (NaN on a scene's first frame; the first
frame is the scene's first frame when scenes are measured separately), so its start-end drift, per-chunk curve
and mean (the VBench score) come out of the usual summaries.

Weights come from the Hugging Face cache or hub (any DINO/DINOv2 ViT or CLIP checkpoint name, or a local folder).
Offline and uncached, :func:`load_encoder` fails with one :class:`FeatureWeightsError` saying how to fetch them.
Any callable ``frames (B, 3, h, w) in [0, 1] -> features (B, D)`` works as the encoder (e.g. a judge network's
embedding); encoders built from a config (:func:`encoder_from_config`, random weights) are for tests and are
flagged as not reportable.

Example:
    >>> scorer = subject_consistency()                     # DINO ViT-B/16 from the HF cache   # doctest: +SKIP
    >>> vm = measure("clip.mp4", scorers=[scorer])                                           # doctest: +SKIP
    >>> float(np.nanmean(vm.series["subject_consistency"]))   # VBench's score                 # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vidfix.metrics.scorers import MetricInfo

__all__ = [
    "DEFAULT_MODELS",
    "EncoderKind",
    "FeatureConsistency",
    "FeatureWeightsError",
    "ImageEncoder",
    "background_consistency",
    "consistency_scores",
    "encoder_from_config",
    "load_encoder",
    "subject_consistency",
]

EncoderKind: TypeAlias = Literal["dino", "clip"]
DEFAULT_MODELS: dict[str, str] = {"dino": "facebook/dino-vitb16", "clip": "openai/clip-vit-base-patch32"}
_SIZE = 224
_MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "dino": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


class FeatureWeightsError(RuntimeError):
    """Image-feature weights are not in the Hugging Face cache and cannot be downloaded (or cannot be loaded)."""


@dataclass(frozen=True)
class ImageEncoder:
    """A loaded image-feature network with its preprocessing: frames ``(B, 3, h, w)`` in [0, 1] to ``(B, D)``."""

    module: nn.Module
    kind: EncoderKind
    name: str  # checkpoint name or folder, or "random"
    reportable: bool  # False for random weights (plumbing tests)

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        device = next(self.module.parameters()).device
        x = frames.to(device=device, dtype=torch.float32)
        h, w = x.shape[-2:]
        if min(h, w) != _SIZE:
            scale = _SIZE / min(h, w)
            size = (max(_SIZE, round(h * scale)), max(_SIZE, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        if self.kind == "clip":  # centre crop to 224 x 224
            top, left = (x.shape[-2] - _SIZE) // 2, (x.shape[-1] - _SIZE) // 2
            x = x[..., top : top + _SIZE, left : left + _SIZE]
        mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in _MEAN_STD[self.kind])
        x = (x - mean) / std
        if self.kind == "clip":
            return self.module(pixel_values=x).image_embeds.float()  # (B, D) projected embedding
        extra = {"interpolate_pos_encoding": True} if _model_type(self.module) == "vit" else {}
        return self.module(pixel_values=x, **extra).last_hidden_state[:, 0].float()  # (B, D) class token


def _model_type(module: nn.Module) -> str:
    return str(getattr(getattr(module, "config", None), "model_type", ""))


def _check_kind(kind: str) -> None:
    if kind not in get_args(EncoderKind):
        raise ValueError(
            f"unknown encoder {kind!r}; allowed: {', '.join(repr(k) for k in get_args(EncoderKind))}"
        )


def _build(kind: EncoderKind, name: str, *, local_files_only: bool) -> nn.Module:
    from transformers import AutoConfig, AutoModel, CLIPVisionModelWithProjection, ViTModel

    if kind == "clip":
        return CLIPVisionModelWithProjection.from_pretrained(name, local_files_only=local_files_only)
    config = AutoConfig.from_pretrained(name, local_files_only=local_files_only)
    if config.model_type == "vit":  # DINO v1 checkpoints: no trained pooler
        return ViTModel.from_pretrained(name, add_pooling_layer=False, local_files_only=local_files_only)
    return AutoModel.from_pretrained(name, local_files_only=local_files_only)


def _how_to_fetch(kind: str, name: str) -> str:
    from huggingface_hub import constants

    offline = " (HF_HUB_OFFLINE is set, so nothing is downloaded)" if constants.HF_HUB_OFFLINE else ""
    return (
        f"{'DINO' if kind == 'dino' else 'CLIP'} weights {name!r} are not in the Hugging Face cache "
        f"{constants.HF_HUB_CACHE!r}{offline}. Fetch them on a machine with internet with "
        f"`hf download {name}` (or `huggingface-cli download {name}`) and copy the cache folder here (HF_HOME), "
        "or pass a local checkpoint folder as the model name"
    )


def load_encoder(
    kind: EncoderKind,
    name: str | None = None,
    *,
    download: bool = True,
    device: str | torch.device = "cpu",
) -> ImageEncoder:
    """Load a DINO-family or CLIP image encoder from the Hugging Face cache (downloading it if allowed).

    Args:
        kind: ``"dino"`` (ViT or DINOv2 class token) or ``"clip"`` (CLIP vision tower's projected embedding).
        name: checkpoint name or local folder (default :data:`DEFAULT_MODELS`, the VBench choices).
        download: try the hub when the cache lacks it (the hub's own offline switches still apply).
        device: where the network runs.

    Raises:
        FeatureWeightsError: not cached and not downloadable (one line saying how to fetch it), or unloadable.
    """
    _check_kind(kind)
    name = name or DEFAULT_MODELS[kind]
    try:
        module = _build(kind, name, local_files_only=True)
    except OSError as cached_err:
        if not download:
            raise FeatureWeightsError(_how_to_fetch(kind, name)) from cached_err
        try:
            module = _build(kind, name, local_files_only=False)
        except OSError as err:
            raise FeatureWeightsError(_how_to_fetch(kind, name)) from err
    except (ValueError, KeyError) as err:
        raise FeatureWeightsError(f"cannot load {name!r} as a {kind} image encoder: {err}") from err
    return ImageEncoder(module=module.to(device).eval(), kind=kind, name=name, reportable=True)


def encoder_from_config(kind: EncoderKind, config: Any) -> ImageEncoder:
    """An encoder with random weights from a ``transformers`` config (ViT, DINOv2 or CLIP vision): for tests only."""
    _check_kind(kind)
    from transformers import AutoModel, CLIPVisionModelWithProjection, ViTModel

    if kind == "clip":
        module: nn.Module = CLIPVisionModelWithProjection(config)
    elif config.model_type == "vit":
        module = ViTModel(config, add_pooling_layer=False)
    else:
        module = AutoModel.from_config(config)
    return ImageEncoder(module=module.eval(), kind=kind, name="random", reportable=False)


def consistency_scores(features: Tensor, starts: Tensor | None = None) -> Tensor:
    """VBench consistency of each frame from its features ``(T, D)``: ``(T,)``, NaN where a scene starts.

    ``(max(0, cos(f_t, f_prev)) + max(0, cos(f_t, f_first))) / 2`` with ``f_first`` the scene's first frame.
    """
    f = F.normalize(features.double(), dim=-1)
    out = torch.full((len(f),), math.nan, dtype=torch.float64)
    first = 0
    for t in range(len(f)):
        if t == 0 or (starts is not None and bool(starts[t])):
            first = t
        else:
            out[t] = _vbench(f[t], f[t - 1], f[first])
    return out


def _vbench(f: Tensor, prev: Tensor, first: Tensor) -> Tensor:
    """VBench's per-frame consistency of unit features: mean of the clamped cosines to the previous and first frame."""
    return ((f @ prev).clamp_min(0) + (f @ first).clamp_min(0)) / 2


class FeatureConsistency:
    """A :class:`~vidfix.metrics.FrameScorer`: VBench consistency of each frame under an image encoder.

    Args:
        encoder: frames ``(B, 3, h, w)`` in [0, 1] to features ``(B, D)`` (an :class:`ImageEncoder`, or any callable).
        name: the series name, e.g. ``"subject_consistency"``.
        description: what the features are, for reports.
        size: short side the frames are resized to before the encoder (224 for VBench's encoders).
    """

    def __init__(
        self, encoder: Callable[[Tensor], Tensor], name: str, description: str, *, size: int | None = _SIZE
    ) -> None:
        self.encoder = encoder
        self.size = size
        self.metrics: Mapping[str, MetricInfo] = {
            name: MetricInfo(
                "cosine",
                f"VBench {name.replace('_', ' ')}: mean cosine to the scene's first and the previous frame ({description})",
                "more consistent",
                "anchor",
                score=True,
            )
        }
        self._name = name
        reportable = getattr(encoder, "reportable", True)
        self.note = None if reportable else f"{name}: random-weight encoder (plumbing only; not reportable)"
        self._first: Tensor | None = None
        self._prev: Tensor | None = None

    def start(self) -> None:
        self._first = self._prev = None

    def __call__(self, frames: Tensor, starts: Tensor) -> dict[str, Tensor]:
        f = F.normalize(self.encoder(frames).double().cpu(), dim=-1)  # (B, D)
        out = torch.full((len(f),), math.nan, dtype=torch.float64)
        for i in range(len(f)):
            if self._first is None or bool(starts[i]):
                self._first = f[i]
            else:
                assert self._prev is not None
                out[i] = _vbench(f[i], self._prev, self._first)
            self._prev = f[i]
        return {self._name: out}


def subject_consistency(
    name: str | None = None, *, download: bool = True, device: str | torch.device = "cpu"
) -> FeatureConsistency:
    """VBench subject consistency: DINO features (default ``facebook/dino-vitb16``)."""
    encoder = load_encoder("dino", name, download=download, device=device)
    return FeatureConsistency(encoder, "subject_consistency", f"DINO {encoder.name}")


def background_consistency(
    name: str | None = None, *, download: bool = True, device: str | torch.device = "cpu"
) -> FeatureConsistency:
    """VBench background consistency: CLIP image embeddings (default ``openai/clip-vit-base-patch32``)."""
    encoder = load_encoder("clip", name, download=download, device=device)
    return FeatureConsistency(encoder, "background_consistency", f"CLIP {encoder.name}")
