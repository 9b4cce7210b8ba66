"""GPU check on a real checkpoint: Wan 2.1 T2V 1.3B with and without vidfix, and the drift report of both.

    python scripts/gpu_wan_check.py --model /models/Wan2.1-T2V-1.3B-Diffusers --out runs/gpu_wan
    python scripts/gpu_wan_check.py --model /models/Wan2.1-T2V-1.3B-Diffusers --videos my_clips/   # calibrate first
    python scripts/gpu_wan_check.py --model ... --self-forcing /models/Self-Forcing-diffusers      # + rolling KV

What it does: loads the pipeline (bf16, VAE in fp32) on the GPU; takes the corrector from ``--calibration
FILE``, or calibrates on ``--videos`` (``vidfix calibrate --pipeline`` in the library), or uses ``DCW(low=--low)``
(an uncalibrated starting value: say so when you report it); generates one video per seed without vidfix and
one with it (same seeds); writes the latent drift of each and runs ``vidfix drift`` on both videos. With
``--self-forcing DIR`` (a Self-Forcing transformer in diffusers format) it also runs the rolling-KV loop
(:class:`vidfix.pipelines.rolling_wan.RollingWan`) with and without vidfix, where the installed diffusers has
that path (PR #13681); else it prints why in one line and skips it.

Budget at the defaults on one H100/H200: about 1 minute to load, 1-2 minutes per 81-frame 480x832 video at 30
steps with guidance (2 videos), 1-2 minutes for a calibration on 2 clips: under 10 minutes. Memory: about 20 GB.

Without a GPU (and without ``--device cpu``), or without the weights folder, it prints one line and exits 2.
Outputs in ``--out``: ``plain/`` and ``vidfix/`` (mp4, latent drift JSON, run.json per seed), ``drift.json`` and
``drift.png`` (pixel drift of both, ``vidfix drift``), ``calibration.json`` when calibrated, ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python scripts/gpu_wan_check.py",
        description="Wan 2.1 (and Self-Forcing) with and without vidfix on a GPU, with the drift report.",
        epilog=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", metavar="DIR", help="a local Wan 2.1 T2V diffusers folder (model_index.json)")
    p.add_argument(
        "--self-forcing", metavar="DIR", help="a Self-Forcing transformer in diffusers format (optional)"
    )
    p.add_argument("--out", default="runs/gpu_wan_check", help="output folder (default runs/gpu_wan_check)")
    p.add_argument("--prompt", default="a red fox running through fresh snow in a pine forest, daylight")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--frames", type=int, default=81, help="pixel frames (default 81)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seeds", default="0", help="e.g. 0 or 0-1 (one video per seed and condition)")
    c = p.add_argument_group("corrector (one of)")
    c.add_argument("--calibration", metavar="FILE", help="a file from `vidfix calibrate --pipeline`")
    c.add_argument("--videos", nargs="+", metavar="VIDEO", help="calibrate on these clips first")
    c.add_argument(
        "--low", type=float, default=0.005, help="else DCW(low=...): an uncalibrated start (0.005)"
    )
    c.add_argument("--calibration-frames", type=int, default=33, help="pixel frames per calibration clip")
    s = p.add_argument_group("Self-Forcing rolling-KV loop")
    s.add_argument("--chunks", type=int, default=7, help="chunks of 3 latent frames (default 7)")
    p.add_argument("--device", default="cuda", help="cuda (default); cpu only for a dry run on tiny weights")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="default: bf16 on cuda")
    p.add_argument(
        "--pipe-arg", action="append", default=[], metavar="KEY=JSON", help="extra pipe(...) arguments"
    )
    return p


def _say(message: str) -> None:
    print(f"gpu_wan_check: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    # The two things this check cannot do without: one line each, before anything is loaded.
    if str(ns.device).startswith("cuda") and not torch.cuda.is_available():
        _say("no CUDA GPU on this machine; run it where one is (about 20 GB of GPU memory), nothing was done")
        return 2
    folder = Path(ns.model) if ns.model else None
    if folder is None or not (folder / "model_index.json").is_file():
        where = "no --model given" if folder is None else f"{folder} has no model_index.json"
        _say(
            f"no Wan weights folder ({where}); download Wan-AI/Wan2.1-T2V-1.3B-Diffusers and pass --model DIR"
        )
        return 2

    from vidfix.pipelines.diffusers_run import GenerateConfig, generate, load_pipeline
    from vidfix.pipelines.factory import parse_seeds

    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = ns.dtype or ("bfloat16" if str(ns.device).startswith("cuda") else "float32")
    summary: dict[str, Any] = {"model": str(folder), "device": _device_name(ns.device), "args": vars(ns)}
    clock = time.perf_counter()
    pipe = load_pipeline("wan", folder, dtype=dtype, device=ns.device)
    pipe.set_progress_bar_config(disable=True)
    summary["load_s"] = round(time.perf_counter() - clock, 1)
    _say(f"loaded {type(pipe).__name__} in {summary['load_s']} s on {summary['device']}")

    corrector, how = _corrector(ns, pipe, out)
    summary["corrector"] = {"how": how, "dcw": corrector.to_dict()}
    _say(f"corrector: {how}")
    extra = {k: json.loads(v) for k, v in (a.split("=", 1) for a in ns.pipe_arg)}
    config = GenerateConfig(
        prompt=ns.prompt, negative_prompt=ns.negative_prompt, num_frames=ns.frames, height=ns.height,
        width=ns.width, steps=ns.steps, seeds=tuple(parse_seeds(ns.seeds)), name="wan", pipeline_kwargs=extra,
    )  # fmt: skip
    from vidfix import Identity

    videos = []
    for name, corr in (("plain", Identity()), ("vidfix", corrector)):
        clock = time.perf_counter()
        results = generate(pipe, config, corr, out / name)
        summary[f"{name}_s"] = round(time.perf_counter() - clock, 1)
        videos += [str(r.video) for r in results]
        _say(f"{name}: {len(results)} video(s) in {summary[f'{name}_s']} s -> {out / name}")
    summary["drift"] = _drift(videos, out / "drift", chunk=max(1, min(16, ns.frames // 4)))

    if ns.self_forcing:
        summary["self_forcing"] = _self_forcing(ns, pipe, corrector, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    _say(
        f"done: {out / 'drift.png'}, {out / 'summary.json'} (compare the plain and vidfix rows of drift.json)"
    )
    return 0


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(device) if str(device).startswith("cuda") else str(device)


def _corrector(ns: argparse.Namespace, pipe: Any, out: Path) -> tuple[Any, str]:
    """The DCW to compare: from a file, from a calibration on --videos, or the uncalibrated start value."""
    from vidfix.pipelines.adapters import corrector_from_calibration

    from vidfix import DCW

    if ns.calibration:
        return corrector_from_calibration(ns.calibration, pipe), f"calibration file {ns.calibration}"
    if ns.videos:
        import torch
        from vidfix.pipelines.adapters import (
            PipelineDenoiser,
            encode_video,
            pipeline_scheduler,
            save_pipeline_calibration,
        )
        from vidfix.scripts.calibrate_pipeline import read_clips

        from vidfix.calibration import calibrate

        clock = time.perf_counter()
        clips = read_clips(ns.videos, ns.calibration_frames)
        denoiser = PipelineDenoiser.from_pipe(pipe, ns.prompt, negative_prompt=ns.negative_prompt)
        reference = encode_video(pipe, clips, height=ns.height, width=ns.width)
        result = calibrate(
            denoiser, pipeline_scheduler(pipe, reference.shape), reference, num_steps=ns.steps,
            generator=torch.Generator(device=reference.device).manual_seed(0),
        )  # fmt: skip
        path = save_pipeline_calibration(
            result, out / "calibration.json", pipe=pipe, info={"prompt": ns.prompt}
        )
        seconds = round(time.perf_counter() - clock, 1)
        return result.to_dcw(), f"calibrated on {len(clips)} clip(s) in {seconds} s -> {path}"
    return DCW(low=ns.low), f"DCW(low={ns.low}), an uncalibrated starting value"


def _drift(videos: list[str], stem: Path, *, chunk: int) -> dict[str, Any]:
    """``vidfix drift`` on the videos: JSON and PNG next to ``stem``; the start-end rows of the JSON."""
    from vidfix.scripts.drift import main as drift_main

    names = [f"{Path(v).parent.name}/{Path(v).stem}" for v in videos]
    argv = [*videos, "--names", *names, "--chunk-frames", str(chunk), "--json", f"{stem}.json",
            "--plot", f"{stem}.png", "--quiet"]  # fmt: skip
    code = drift_main(argv)
    return {"exit_code": code, "json": f"{stem}.json", "plot": f"{stem}.png"}


def _self_forcing(ns: argparse.Namespace, pipe: Any, corrector: Any, out: Path) -> dict[str, Any]:
    """The rolling-KV loop with and without vidfix, where this diffusers has it (PR #13681)."""
    from vidfix.pipelines.rolling_wan import RollingWan, rolling_kv_support

    reason = rolling_kv_support()
    if reason is not None:
        _say(f"self-forcing skipped: {reason}")
        return {"skipped": reason}
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from vidfix.metrics.io import write_video

    from vidfix import ARLoop, DriftTracker

    transformer = WanTransformer3DModel.from_pretrained(ns.self_forcing, torch_dtype=pipe.transformer.dtype)
    sf = WanPipeline(**(pipe.components | {"transformer": transformer.to(ns.device),
                                            "scheduler": FlowMatchEulerDiscreteScheduler(shift=5.0)}))  # fmt: skip
    videos: list[str] = []
    record: dict[str, Any] = {}
    for name, corr in (("sf_plain", None), ("sf_vidfix", corrector)):
        loop = ARLoop(corr, tracker=DriftTracker())
        clock = time.perf_counter()
        frames = RollingWan(sf, loop)(
            ns.prompt, num_chunks=ns.chunks, height=ns.height, width=ns.width,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        path = write_video(out / f"{name}.mp4", frames.float().cpu().numpy(), fps=16)
        assert loop.tracker is not None
        loop.tracker.to_json(out / f"{name}.drift.json")
        record[f"{name}_s"] = round(time.perf_counter() - clock, 1)
        videos.append(str(path))
        _say(f"{name}: {frames.shape[0]} frames in {record[f'{name}_s']} s -> {path}")
    record["drift"] = _drift(videos, out / "sf_drift", chunk=12)
    return record


if __name__ == "__main__":
    sys.exit(main())
