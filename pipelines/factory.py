"""Build the chunked sampler's parts from names: seeds, schedulers and models in folders.

What the command-line tools (and benchmarks) share, so each script only parses arguments; correctors come
from :func:`vidfix.pipelines.diffusers_run.make_corrector` (the same options as ``--pipeline`` runs).
Latents are ``(B, C, F, H, W)``.

Example:
    >>> parse_seeds("0,3,5-7")
    [0, 3, 5, 6, 7]
    >>> scheduler = make_scheduler("unipc", shift=3.0)                         # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from vidfix.pipelines.choices import SCHEDULERS, SchedulerName
from vidfix.pipelines.runs import read_json

from vidfix._checks import check_choice

__all__ = [
    "SCHEDULERS",
    "SchedulerName",
    "check_calibration",
    "describe_model",
    "format_seeds",
    "load_denoiser",
    "make_scheduler",
    "parse_seeds",
    "reference_model_folder",
    "sprite_process_config",
]


def parse_seeds(text: str) -> list[int]:
    """Seeds from ranges and lists: ``"0-7"``, ``"0,3,5-9"``, ``"42"`` (in order, duplicates refused)."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            raise ValueError(f"empty item in seeds {text!r}; write e.g. '0-7' or '0,3,5-9'")
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"bad seed item {part!r} in {text!r}; write e.g. '0-7' or '0,3,5-9'") from None
        if first < 0 or last < first:
            raise ValueError(f"bad seed range {part!r}: need 0 <= first <= last")
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {text!r} repeat a seed")
    return seeds


def format_seeds(seeds: Sequence[int]) -> str:
    """The inverse of :func:`parse_seeds` for display: ``[0, 1, 2, 3]`` -> ``"0-3"``, else ``"0,5"``."""
    s = list(seeds)
    if len(s) > 2 and s == list(range(s[0], s[0] + len(s))):
        return f"{s[0]}-{s[-1]}"
    return ",".join(str(x) for x in s)


def reference_model_folder() -> Path:
    """The shipped reference model's folder; a clear error when this build has none."""
    try:
        from vidfix.pipelines.reference.loading import REFERENCE_WEIGHTS_DIR
    except ImportError as err:
        raise FileNotFoundError(
            f"this build has no shipped reference model ({err}); pass a model folder (--model DIR)"
        ) from err
    folder = Path(REFERENCE_WEIGHTS_DIR)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"the shipped reference model is missing: {folder / 'config.json'}")
    return folder


def _scheduler_defaults(folder: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``num_train_timesteps`` and ``shift`` from a model folder's ``scheduler_config.json`` (or defaults)."""
    out: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 1.0}
    if folder is not None:
        for path in (
            Path(folder) / "scheduler_config.json",
            Path(folder) / "scheduler" / "scheduler_config.json",
        ):
            if path.is_file():
                data = read_json(path, "scheduler config")
                out["num_train_timesteps"] = int(data.get("num_train_timesteps", out["num_train_timesteps"]))
                out["shift"] = float(data.get("shift", data.get("flow_shift", out["shift"])))
                break
    return out


def make_scheduler(
    name: SchedulerName,
    *,
    shift: float | None = None,
    num_train_timesteps: int | None = None,
    model_folder: str | os.PathLike[str] | None = None,
) -> Any:
    """A flow-matching scheduler by name.

    ``euler``: ``FlowMatchEulerDiscreteScheduler``; ``unipc``: ``UniPCMultistepScheduler`` with
    ``prediction_type="flow_prediction", use_flow_sigmas=True``; ``fewstep``: the few-step x0 / re-noise mode
    of distilled causal models (:class:`vidfix.pipelines.fewstep.FewStepScheduler`, levels evenly spaced
    over the steps: 4 steps are 1000, 750, 500, 250). ``shift`` and ``num_train_timesteps``
    default to the model folder's ``scheduler_config.json`` when it has one, else 1.0 and 1000.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    check_choice("scheduler", name, SCHEDULERS)
    d = _scheduler_defaults(model_folder)
    shift = d["shift"] if shift is None else float(shift)
    T = d["num_train_timesteps"] if num_train_timesteps is None else int(num_train_timesteps)
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    if name == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=shift)
    if name == "fewstep":
        from vidfix.pipelines.fewstep import FewStepScheduler

        return FewStepScheduler(num_train_timesteps=T, shift=shift)
    return UniPCMultistepScheduler(
        num_train_timesteps=T, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift
    )


def _resolve_class(spec: str) -> type:
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"model class must be written 'module:Class', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import model class {spec!r}: {err}") from err


def load_denoiser(
    folder: str | os.PathLike[str] | None = None,
    *,
    model_class: str | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Any, Path]:
    """Load a chunk denoiser saved diffusers-style (``config.json`` + safetensors) from a local folder.

    ``folder=None`` is the shipped reference model. The class is ``model_class`` (``"module:Class"``) or
    the ``_class_name`` in ``config.json``, looked up in :mod:`vidfix.pipelines` then :mod:`diffusers`.
    Returns the model (eval mode) and its folder.
    """
    path = reference_model_folder() if folder is None else Path(folder)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        raise FileNotFoundError(
            f"no model in {str(path)!r}: the folder {what} (a model folder holds config.json + safetensors)"
        )
    cls: Any = None
    if model_class is not None:
        cls = _resolve_class(model_class)
    else:
        config = read_json(cfg_path, "model config")
        name = config.get("_class_name") if isinstance(config, dict) else None
        if not name:
            raise ValueError(f"{cfg_path} names no _class_name; pass the model class ('module:Class')")
        cls = None
        for module in ("vidfix.pipelines", "diffusers"):
            try:
                cls = getattr(importlib.import_module(module), name, None)
            except ImportError:
                cls = None
            if cls is not None:
                break
        if cls is None:
            raise ValueError(
                f"model class {name!r} of {cfg_path} is neither in vidfix.pipelines nor diffusers; "
                "pass it as 'module:Class'"
            )
    model = cls.from_pretrained(path, local_files_only=True, torch_dtype=dtype)
    return model.to(device).eval(), path


def sprite_process_config(folder: str | os.PathLike[str] | None, size: int) -> Any:
    """The procedural video process the reference model in ``folder`` was trained on.

    Read from the folder's ``train_config.json`` / ``process_config.json`` (key ``data``) when it ships one,
    else the process defaults at ``size`` x ``size`` pixels. Raises ``ImportError`` without the process.
    """
    from vidfix.pipelines.reference.data import SpriteVideoConfig

    data: dict[str, Any] = {}
    for name in ("process_config.json", "train_config.json"):
        path = Path(folder) / name if folder is not None else None
        if path is not None and path.is_file():
            data = dict(json.loads(path.read_text()).get("data", {}))
            break
    return SpriteVideoConfig.from_json({"height": size, "width": size} | data)


def describe_model(model: Any, folder: str | os.PathLike[str] | None) -> dict[str, Any]:
    """JSON identity of a model: class, config and a hash of its weight files (resumes must match it)."""
    cfg = getattr(model, "config", {}) or {}
    config = {k: v for k, v in dict(cfg).items() if not str(k).startswith("_")}
    digest = None
    if folder is not None:
        h = hashlib.sha256()
        files = sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin"))
        for f in files:
            h.update(f.name.encode())
            with f.open("rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        digest = h.hexdigest() if files else None
    return json.loads(
        json.dumps({"class": type(model).__name__, "config": config, "weights_sha256": digest}, default=str)
    )


def check_calibration(
    path: str | os.PathLike[str],
    *,
    scheduler: Any,
    num_steps: int,
    model: dict[str, Any] | None = None,
    compare_timesteps: bool = True,
) -> list[str]:
    """Check that a calibration file was measured for this run: scheduler class, step count, timesteps, model.

    A ``vidfix calibrate`` file records the scheduler, the step count and the timesteps it measured at (and,
    from this version on, the model); its per-step coefficients only mean something for that schedule. A bare
    DCW JSON records none of it: the returned list then holds one note saying so (the caller warns).

    Args:
        path: the calibration file.
        scheduler: the run's scheduler (compared by class and by the timesteps of ``num_steps`` steps).
        num_steps: the run's solver steps.
        model: the run's :func:`describe_model` (compared by class and weights hash when the file has them).
        compare_timesteps: also compare the timesteps (off for pipelines whose schedule depends on the
            video size, such as LTX's resolution-dependent shift).

    Raises:
        ValueError: the file was measured for another scheduler, step count, schedule or model (all
            differences in one message, with the command that measures the right one).
    """
    from vidfix.tap import original_class

    data = read_json(path, "calibration file")
    if not isinstance(data, dict) or data.get("type") != "vidfix-calibration":
        return [f"{path} records no scheduler, step count or model (a bare DCW file): check it fits this run"]
    diffs: list[str] = []
    name = original_class(scheduler).__name__
    if data.get("scheduler") not in (None, name):
        diffs.append(f"scheduler {data.get('scheduler')} (this run: {name})")
    if data.get("num_steps") not in (None, num_steps):
        diffs.append(f"{data.get('num_steps')} steps (this run: {num_steps})")
    elif compare_timesteps and data.get("timesteps") and not diffs:
        probe = copy.deepcopy(scheduler)
        probe.set_timesteps(num_steps)
        ours = [float(t) for t in probe.timesteps]
        theirs = [float(t) for t in data["timesteps"]]
        if len(ours) != len(theirs) or any(
            abs(a - b) > 1e-3 * max(1.0, abs(a)) for a, b in zip(ours, theirs)
        ):
            diffs.append(f"timesteps {_short(theirs)} (this run: {_short(ours)}; another --shift?)")
    saved = data.get("model")
    if model is not None and isinstance(saved, dict):
        for key in ("class", "weights_sha256"):
            if saved.get(key) is not None and model.get(key) is not None and saved[key] != model[key]:
                what = "weights" if key == "weights_sha256" else "model class"
                diffs.append(f"{what} {str(saved[key])[:12]} (this run: {str(model[key])[:12]})")
    if diffs:
        raise ValueError(
            f"calibration file {str(path)!r} was measured for "
            + ", ".join(diffs)
            + "; measure this run's with "
            f"`vidfix calibrate --steps {num_steps} ...` (the same model, scheduler and shift)"
        )
    return []


def _short(values: list[float]) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:3])
    return f"[{shown}{', ...' if len(values) > 3 else ''}]"
