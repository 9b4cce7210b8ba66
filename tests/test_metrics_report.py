"""Reports (JSON schema, table, plots), measure options, and the ``vidfix drift`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _videos import scene, to_u8, with_brightness
from vidfix.metrics import (
    METRICS,
    SCHEMA,
    drift_report,
    format_table,
    load_report,
    measure,
    plot_report,
    save_report,
    write_video,
)
from vidfix.metrics.grid import grid_shape
from vidfix.scripts import drift as drift_cli

T = 24


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    base = scene(T, 48, 64, seed=3)
    return {
        "plain": write_video(d / "plain.mkv", to_u8(with_brightness(base, 0.15)), codec="ffv1", fps=24),
        "fixed": write_video(d / "fixed.mkv", to_u8(with_brightness(base, 0.03)), codec="ffv1", fps=24),
        "real": write_video(d / "real.mkv", to_u8(scene(T, 48, 64, seed=9)), codec="ffv1", fps=24),
        "big": write_video(d / "big.mkv", to_u8(scene(T, 64, 96, seed=3)), codec="ffv1", fps=24),
        "fast": write_video(d / "fast.mkv", to_u8(base), codec="ffv1", fps=30),
    }


@pytest.fixture(scope="module")
def report(clips) -> dict:
    return drift_report([clips["plain"], clips["fixed"]], reference=clips["real"], chunk_frames=8, window=8)


def test_report_schema(report):
    assert report["schema"] == SCHEMA
    assert set(report) == {
        "schema",
        "vidfix_version",
        "settings",
        "metrics",
        "features",
        "videos",
        "references",
        "comparison",
        "notes",
    }
    assert report["settings"]["chunk_frames"] == 8 and report["settings"]["reference"] == ["real.mkv"]
    v = report["videos"][0]
    assert v["name"] == "plain.mkv" and v["frames"] == T and v["fps"] == 24.0 and v["anchor_frames"] == 8
    assert v["frame_index"] == list(range(T))
    for name, series in v["series"].items():
        assert name in report["metrics"] and len(series) == T
    assert v["series"]["flicker"][0] is None  # NaN written as null
    assert set(v["start_end"]["luma_mean"]) == {"start", "end", "signed", "abs", "frames"}
    assert v["chunks"]["bounds"] == [[0, 8], [8, 16], [16, 24]]
    assert v["chunks"]["curve"]["luma_mean"][0] == 0 and v["chunks"]["curve"]["luma_mean"][2] > 0.05
    assert v["lag"]["ssim"]["lags"] == [2, 5, 10, 20] and len(v["lag"]["ssim"]["values"]) == 4
    assert v["lag"]["abs_change"]["lags"] == [2, 5, 10, 20]
    assert v["frechet"]["start"][0] == 0 and v["frechet"]["stop"][-1] == T
    assert (
        v["frechet"]["distance"][-1] > v["frechet"]["distance"][0]
    )  # the brightness ramp leaves the reference
    luma = report["comparison"]["metrics"]["luma_mean"]
    assert luma["difference"]["fixed.mkv"] == pytest.approx(
        -0.12 * (1 - 4 / 24), abs=0.01
    )  # 0.03 - 0.15 of the ramp
    assert report["comparison"]["spread_from"] == "references"
    assert luma["spread"] == pytest.approx(report["references"][0]["spread"]["luma_mean"])
    assert luma["in_spread"]["fixed.mkv"] < -10  # far outside what the real clip does by itself
    assert v["grid"] == [48, 64] and v["scenes"] == [[0, T]] and v["cuts"] == [] and v["notes"] == []
    assert v["times"] == pytest.approx([i / 24 for i in range(T)], abs=1e-3)
    assert set(v["chunks"]["vde"]) == {m for m, i in report["metrics"].items() if i["score"]}


def test_delta_e_anchors_on_the_first_chunk(report, clips):
    plain = report["videos"][0]["series"]
    lab = np.array([plain["lab_l"], plain["lab_a"], plain["lab_b"]]).T
    want = np.linalg.norm(lab - lab[:8].mean(0), axis=1)
    np.testing.assert_allclose(plain["delta_e"], want, rtol=1e-6)


def test_json_round_trip_is_strict(report, tmp_path):
    path = save_report(report, tmp_path / "r.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert load_report(path) == json.loads(text) == report
    (tmp_path / "other.json").write_text('{"schema": "something/else"}')
    with pytest.raises(ValueError, match=r"is not a vidfix\.drift/2 report"):
        load_report(tmp_path / "other.json")


def test_table_and_plot(report, tmp_path):
    table = format_table(report)
    assert "plain.mkv" in table and "fixed.mkv" in table and "luma_mean" in table and "frechet" in table
    row = next(line for line in table.splitlines() if line.startswith("luma_mean"))
    assert "(+0.1" in row  # signed start-end drift of the 0.15 ramp
    assert " sd)" in row and "x" not in row.split("(+0.1")[-1]  # differences in spreads, no ratios
    out = plot_report(report, tmp_path / "p.png", metrics=["luma_mean", "delta_e"], columns=2)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_sampler_tensor_batch(tmp_path):
    base = scene(10, 32, 32, seed=1)
    videos = np.stack([base, with_brightness(base, 0.2)])  # (B, T, H, W, C)
    x = torch.from_numpy(videos).permute(0, 4, 1, 2, 3).float() * 2 - 1  # (B, C, F, H, W) in [-1, 1]
    report = drift_report(x, layout="BCTHW", value_range=(-1, 1), names=["a", "b"])
    assert [v["name"] for v in report["videos"]] == ["a", "b"]
    a, b = (v["start_end"]["luma_mean"]["signed"] for v in report["videos"])
    assert b - a == pytest.approx(0.2 * (1 - 1 / 9), abs=1e-3)  # 2 frames each end of 10: ramp 1/9 apart


def test_size_and_fps_mismatch(clips):
    with pytest.raises(ValueError, match="differ in size"):
        drift_report([clips["plain"], clips["big"]])
    resized = drift_report([clips["plain"], clips["big"]], mismatch="resize")
    assert resized["settings"]["size"] == [48, 64]
    assert [(v["height"], v["width"]) for v in resized["videos"]] == [(48, 64), (64, 96)]  # as stored
    assert all(v["grid"] == [48, 64] for v in resized["videos"])  # as measured
    with pytest.raises(ValueError, match="differ in frame rate"):
        drift_report([clips["plain"], clips["fast"]])
    assert len(drift_report([clips["plain"], clips["fast"]], ignore_fps=True)["videos"]) == 2


def test_measure_grid_and_progress():
    assert [grid_shape(h, 16 * h // 9) for h in (144, 240, 480, 720, 2160)] == [
        (144, 256),
        (160, 284),
        (160, 284),
        (160, 284),
        (160, 284),
    ]
    x = to_u8(scene(6, 192, 256, seed=4))
    full = measure(x, grid=None)
    small = measure(x, grid=96)
    assert full.grid == (192, 256) and small.grid == (96, 128)
    for name in ("mean_r", "mean_b", "luma_mean"):  # an antialiased grid keeps linear means
        np.testing.assert_allclose(small.series[name], full.series[name], rtol=0.01, err_msg=name)
    seen: list[int] = []
    started: list[int | None] = []
    measure(x, batch_size=4, on_start=started.append, on_frames=seen.append)
    assert started == [6] and seen == [4, 2]
    with pytest.raises(ValueError, match="analysis grid"):
        measure(to_u8(scene(4, 12, 64)))
    with pytest.raises(ValueError, match="grid must be"):
        measure(x, grid=4)
    with pytest.raises(ValueError, match="holds 2 videos"):
        measure(torch.zeros(2, 3, 4, 32, 32), layout="BCTHW")


def test_metric_registry_is_complete():
    vm = measure(scene(4, 32, 32))
    assert set(vm.series) == set(METRICS) - {"lpips_anchor", "lpips_adjacent"}
    assert not vm.metric_info


def test_cli_writes_table_json_and_plot(clips, tmp_path, capsys):
    out_json, out_png = tmp_path / "d.json", tmp_path / "d.png"
    argv = [str(clips["plain"]), str(clips["fixed"]), "--chunks", "3", "--reference", str(clips["real"])]
    rc = drift_cli.main([*argv, "--window", "8", "--json", str(out_json), "--plot", str(out_png), "--quiet"])
    assert rc == 0
    shown = capsys.readouterr().out
    assert "start-end drift" in shown and "luma_mean" in shown and f"wrote {out_json}" in shown
    data = load_report(out_json)
    assert data["settings"]["chunks"] == 3 and len(data["videos"][0]["chunks"]["bounds"]) == 3
    assert out_png.stat().st_size > 20_000


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["missing.mp4"], "video file not found: 'missing.mp4'"),
        (["BIG", "PLAIN"], "differ in size"),
        (["PLAIN", "--max-frames", "1"], "at least 2 frames"),
    ],
)
def test_cli_errors_are_one_clear_line(clips, capsys, argv, match):
    argv = [str(clips["big"]) if a == "BIG" else str(clips["plain"]) if a == "PLAIN" else a for a in argv]
    assert drift_cli.main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as info:
        drift_cli.main(["--help"])
    assert info.value.code == 0
    shown = capsys.readouterr().out
    assert (
        "vidfix drift plain.mp4 stabilized.mp4 --chunk-frames 16 --json drift.json --plot drift.png" in shown
    )
    with pytest.raises(SystemExit):
        drift_cli.main(["a.mp4", "--chunks", "2", "--chunk-frames", "4"])  # mutually exclusive


@pytest.mark.slow
def test_script_runs_standalone(clips, tmp_path):
    script = Path(drift_cli.__file__)
    done = subprocess.run(
        [sys.executable, str(script), str(clips["plain"]), "--json", str(tmp_path / "s.json"), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert load_report(tmp_path / "s.json")["videos"][0]["name"] == "plain.mkv"


def test_eight_bit_fast_path_matches_float_path():
    from vidfix.metrics.color import SRGB_TO_LINEAR_U8, srgb_to_linear

    codes = torch.arange(256, dtype=torch.float32) / 255
    assert torch.allclose(torch.from_numpy(SRGB_TO_LINEAR_U8), srgb_to_linear(codes.clone()), atol=1e-7)
    u8 = to_u8(scene(6, 48, 64, seed=8))
    a, b = measure(u8), measure(u8 / 255.0)  # table look-up vs powers
    for name in a.series:
        np.testing.assert_allclose(a.series[name], b.series[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_background_decoding_passes_errors_and_stops():
    from vidfix.metrics.measure import _prefetch

    def items():
        yield 1
        yield 2
        raise RuntimeError("decoder broke")

    got = []
    with pytest.raises(RuntimeError, match="decoder broke"):
        for x in _prefetch(items()):
            got.append(x)
    assert got == [1, 2]
    endless = _prefetch(iter(range(10**9)))
    assert [next(endless) for _ in range(3)] == [0, 1, 2]
    endless.close()  # the consumer stops early: the worker is told to stop


def test_diffusers_numpy_output():
    frames = np.stack(
        [scene(8, 32, 32, seed=1), with_brightness(scene(8, 32, 32, seed=1), 0.1)]
    )  # (B, F, H, W, C)
    report = drift_report(frames.astype(np.float32), layout="BTHWC")  # pipe(..., output_type="np").frames
    assert [v["name"] for v in report["videos"]] == ["video0", "video1"]
    a, b = (v["start_end"]["luma_mean"]["signed"] for v in report["videos"])
    assert b - a == pytest.approx(0.1 * 6 / 7, abs=1e-4)  # mean of last 2 of 8 minus first 2: 6/7 of the ramp
