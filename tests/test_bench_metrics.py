"""``vidfix bench metrics``: the memory sentence reports the 4K clip it really measured."""

from __future__ import annotations

import re

from vidfix.scripts import bench_metrics


def test_memory_sentence_states_the_frame_count_of_the_measured_clip(monkeypatch):
    """Issue 13: the 4K clip was encoded with 64 frames while the report said 24; the count in the text must be
    the count the clip was made with. The 4K clip is swapped for a tiny one (same frame count) and the
    fresh-process memory probe for a constant, so only the bookkeeping runs."""
    made: list[dict[str, object]] = []
    real = bench_metrics.make_clip

    def recording(path, *, frames=120, width=854, height=480, preset="medium"):
        made.append({"frames": frames, "width": width, "height": height})
        if width == 3840:
            width, height = 32, 32  # the text is under test, not 4K encoding
        return real(path, frames=frames, width=width, height=height, preset="ultrafast")

    monkeypatch.setattr(bench_metrics, "make_clip", recording)
    monkeypatch.setattr(bench_metrics, "_peak_rss_mb", lambda clip: 500.0 if clip == "-" else 600.0)
    config = bench_metrics.BenchConfig(frames=16, rounds=1, sizes=((64, 64),), write=False)
    text = bench_metrics.run(config, "vidfix bench metrics")
    (clip4k,) = [m for m in made if m["width"] == 3840 and m["height"] == 2160]
    found = re.search(r"3840x2160 h264 clip of (\d+) frames", text)
    assert found is not None, text
    assert int(found.group(1)) == clip4k["frames"]
    assert "**600 MB**" in text and "adds 100 MB" in text
