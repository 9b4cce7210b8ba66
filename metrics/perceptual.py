"""LPIPS (Zhang et al. 2018, the ``lpips`` package) with an honest, offline-first weight loader.

LPIPS has two parts: small linear heads shipped inside the ``lpips`` package, and an ImageNet backbone
(AlexNet by default) that torchvision keeps in the torch hub cache, ``<torch.hub.get_dir()>/checkpoints/``
(``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``). This module loads the backbone
from that file itself, so an offline machine without the file gets one clear :class:`LPIPSWeightsError` naming
the file, the folder and the download address, instead of a URLError from deep inside torchvision.

Numbers are only reportable from the published backbone: the file must match the SHA-256 prefix in its name
(as torchvision checks on download). ``backbone="random"`` (plumbing tests) and ``allow_unverified=True`` load
but give an :class:`LPIPSModel` with ``reportable=False``; reports refuse such numbers unless told otherwise.

Frames are ``(T, 3, H, W)`` in [0, 1]; distances are ``(T,)``.

Example:
    >>> model = load_lpips()                                   # doctest: +SKIP
    >>> lpips_distance(model, frames, frames[:1])              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import urllib.error
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeAlias, cast, get_args

import torch
from torch import Tensor, nn

__all__ = [
    "LPIPSModel",
    "LPIPSNet",
    "LPIPSWeightsError",
    "backbone_file",
    "load_lpips",
    "lpips_distance",
]

LPIPSNet: TypeAlias = Literal["alex", "vgg", "squeeze"]

# lpips net -> torchvision backbone weights (what lpips itself would fetch through torchvision).
_BACKBONES: dict[str, str] = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}


class LPIPSWeightsError(RuntimeError):
    """The LPIPS backbone weights are missing, cannot be downloaded, unreadable, or not the published file."""


@dataclass(frozen=True)
class LPIPSModel:
    """A ready LPIPS network and where its backbone came from."""

    module: nn.Module
    net: str
    weights: str  # backbone file, or "random"
    reportable: bool  # True only for the published, checksum-verified backbone


def backbone_file(net: LPIPSNet = "alex", *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the backbone weights of ``net`` must be: ``<cache_dir or torch.hub.get_dir()/checkpoints>/<file>``."""
    if net not in _BACKBONES:
        raise ValueError(
            f"unknown LPIPS net {net!r}; allowed: {', '.join(repr(n) for n in get_args(LPIPSNet))}"
        )
    folder = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    return folder / _BACKBONES[net].rsplit("/", 1)[1]


def _hash_prefix(path: Path) -> str:
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    return match.group(1) if match else ""


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _where_to_put(path: Path, net: str) -> str:
    return (
        f"Put the file\n    {path.name}\n  (download it from {_BACKBONES[net]} on a machine with internet)\n"
        f"into the folder\n    {path.parent}\n"
        "(the torch hub cache: $TORCH_HOME/hub/checkpoints, or ~/.cache/torch/hub/checkpoints by default)."
    )


def _fetch(path: Path, net: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(
            _BACKBONES[net], str(path), hash_prefix=_hash_prefix(path), progress=False
        )
    except (urllib.error.URLError, OSError, RuntimeError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise LPIPSWeightsError(
            f"LPIPS needs the ImageNet {net} backbone weights, which are not in the torch hub cache and could not "
            f"be downloaded ({reason}).\n" + _where_to_put(path, net)
        ) from None


def _lpips_module(net: str) -> nn.Module:
    """The LPIPS network with no weights yet (built on the meta device: no 61M-parameter random init, no download)."""
    import lpips

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", UserWarning)  # torchvision's deprecation notes on `pretrained=`
        module = lpips.LPIPS(net=net, pnet_rand=True, pretrained=False, verbose=False)
    return module.to_empty(device="cpu")


def _heads_and_scaling(module: nn.Module, net: str) -> dict[str, Tensor]:
    """The non-backbone weights: linear heads shipped in the lpips package, and the input scaling constants."""
    import lpips

    heads = Path(inspect.getfile(lpips.LPIPS)).parent / "weights" / "v0.1" / f"{net}.pth"
    state = dict(torch.load(heads, map_location="cpu", weights_only=True))
    for i in range(
        len(cast(nn.ModuleList, module.lins))
    ):  # the heads are registered twice (lin{i} and lins.{i}): same tensors
        state[f"lins.{i}.model.1.weight"] = state[f"lin{i}.model.1.weight"]
    scaling = lpips.lpips.ScalingLayer()
    state.update({f"scaling_layer.{k}": v for k, v in scaling.state_dict().items()})
    return state


def _backbone_keys(module: nn.Module) -> dict[str, str]:
    """LPIPS backbone key -> torchvision key: lpips splits ``features`` into slice1..sliceN, keeping the indices."""
    return {
        f"net.{slice_name}.{key}": f"features.{key}"
        for slice_name, block in cast(nn.Module, module.net).named_children()
        for key in block.state_dict()
    }


def _read_backbone(module: nn.Module, path: Path, net: str) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise LPIPSWeightsError(
            f"cannot read the LPIPS backbone file {str(path)!r} ({type(err).__name__}: {err}); it is probably a "
            "partial download. Delete it and put a complete copy there.\n" + _where_to_put(path, net)
        ) from None
    keys = _backbone_keys(module)
    missing = [src for src in keys.values() if not isinstance(state, dict) or src not in state]
    if missing:
        raise LPIPSWeightsError(
            f"{str(path)!r} is not a torchvision {net} state_dict (missing {missing[:3]}...).\n"
            + _where_to_put(path, net)
        )
    return {dst: state[src] for dst, src in keys.items()}


def _random_backbone(module: nn.Module) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = module.state_dict()
    return {k: torch.randn(shapes[k].shape, generator=g) * 0.05 for k in _backbone_keys(module)}


def load_lpips(
    net: LPIPSNet = "alex",
    *,
    backbone: Literal["pretrained", "random"] = "pretrained",
    download: bool = True,
    allow_unverified: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPSModel:
    """Build LPIPS with its backbone from the torch hub cache (downloading it only if missing and allowed).

    Args:
        net: backbone, ``"alex"`` (the LPIPS default), ``"vgg"`` or ``"squeeze"``.
        backbone: ``"pretrained"`` (ImageNet weights from the cache) or ``"random"`` (plumbing tests; never reportable).
        download: try to download a missing file (needs internet); ``False`` fails at once.
        allow_unverified: load a file whose checksum does not match, flagged ``reportable=False``.
        cache_dir: folder holding the file (default ``torch.hub.get_dir()/checkpoints``).
        device: where the network runs.

    Raises:
        LPIPSWeightsError: the file is missing and cannot be downloaded, unreadable, or fails its checksum.
    """
    if backbone not in ("pretrained", "random"):
        raise ValueError(f"unknown backbone {backbone!r}; allowed: 'pretrained', 'random'")
    path = backbone_file(net, cache_dir=cache_dir)
    module = _lpips_module(net)
    if backbone == "random":
        module.load_state_dict({**_heads_and_scaling(module, net), **_random_backbone(module)}, strict=True)
        return LPIPSModel(module=module.to(device).eval(), net=net, weights="random", reportable=False)
    if not path.is_file():
        if not download:
            raise LPIPSWeightsError(
                f"LPIPS needs the ImageNet {net} backbone weights, which are not in the torch hub cache.\n"
                + _where_to_put(path, net)
            )
        _fetch(path, net)
    stat = path.stat()
    verified = _sha256(str(path), stat.st_size, stat.st_mtime_ns).startswith(_hash_prefix(path))
    if not verified and not allow_unverified:
        raise LPIPSWeightsError(
            f"{str(path)!r} does not match the checksum in its name ({_hash_prefix(path)}): it is not the published "
            f"{net} backbone (a partial download, or other weights). Delete it and put the published file there.\n"
            + _where_to_put(path, net)
        )
    module.load_state_dict(
        {**_heads_and_scaling(module, net), **_read_backbone(module, path, net)}, strict=True
    )
    return LPIPSModel(module=module.to(device).eval(), net=net, weights=str(path), reportable=verified)


@torch.no_grad()
def lpips_distance(model: LPIPSModel, x: Tensor, y: Tensor) -> Tensor:
    """LPIPS of frames ``x`` (T, 3, H, W) against ``y`` (T or 1, 3, H, W), both in [0, 1]: ``(T,)``."""
    if x.dim() != 4 or y.dim() != 4 or x.shape[1:] != y.shape[1:] or y.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"LPIPS needs frames (T, 3, H, W) against (T or 1, 3, H, W), got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    device = next(model.module.parameters()).device
    x = x.to(device) * 2 - 1
    y = (y.to(device) * 2 - 1).expand_as(x)
    return model.module(x, y).flatten().float().cpu()
