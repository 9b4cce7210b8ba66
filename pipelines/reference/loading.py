"""The shipped reference model: where its weights live, how to load them offline, and its schedulers.

The weights (``config.json`` + ``diffusion_pytorch_model.safetensors``, float16 on disk) and the
recommended scheduler settings (``scheduler_config.json``) ship inside the package, so everything here
works without a network. Latents are pixels, ``(B, 3, F, H, W)`` in [-1, 1].

Example:
    >>> model = load_reference_model()                               # float32 on the CPU
    >>> scheduler = reference_scheduler("unipc")                      # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeAlias

import torch
from vidfix.pipelines.reference.model import ReferenceVideoModel

from vidfix._checks import check_choice

__all__ = ["REFERENCE_WEIGHTS_DIR", "SchedulerKind", "load_reference_model", "reference_scheduler"]

REFERENCE_WEIGHTS_DIR: Path = Path(__file__).resolve().parent / "weights"
SchedulerKind: TypeAlias = Literal["euler", "unipc"]


def load_reference_model(
    *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, path: str | Path | None = None
) -> ReferenceVideoModel:
    """Load the shipped reference model (or a trained one from ``path``) in eval mode, offline."""
    folder = Path(path) if path is not None else REFERENCE_WEIGHTS_DIR
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no reference model in {folder} (config.json missing); train one with `vidfix train-reference`"
        )
    model = ReferenceVideoModel.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
    return model.to(device).eval()


def reference_scheduler(kind: SchedulerKind = "euler", **overrides: Any) -> Any:
    """A stock diffusers flow-matching scheduler set up for the reference model (the shipped timestep shift).

    ``"euler"``: ``FlowMatchEulerDiscreteScheduler``; ``"unipc"``: ``UniPCMultistepScheduler`` with
    ``prediction_type="flow_prediction", use_flow_sigmas=True`` and the same shift. ``overrides`` go to the
    scheduler's constructor.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    check_choice("scheduler kind", kind, ("euler", "unipc"))
    euler = FlowMatchEulerDiscreteScheduler.from_pretrained(REFERENCE_WEIGHTS_DIR, local_files_only=True)
    if kind == "euler":
        return FlowMatchEulerDiscreteScheduler.from_config(euler.config, **overrides) if overrides else euler
    kwargs: dict[str, Any] = dict(
        num_train_timesteps=euler.config.num_train_timesteps,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=euler.config.shift,
    )
    kwargs.update(overrides)
    return UniPCMultistepScheduler(**kwargs)
