"""LPIPS weight loading offline: one clear error naming file and folder; random or unverified backbones are
never reportable; the loading path is tested with a random-weight alexnet state_dict under the expected name."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import warnings
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torchvision
from _videos import scene, with_brightness
from vidfix.metrics import (
    LPIPSWeightsError,
    UnreportableError,
    backbone_file,
    drift_report,
    format_table,
    load_lpips,
    lpips_distance,
    measure,
    perceptual,
)

NAME = "alexnet-owt-7be5be79.pth"


@pytest.fixture(scope="module")
def random_alexnet(tmp_path_factory) -> Path:
    """A torchvision alexnet state_dict with random features, written as ``$TORCH_HOME/hub/checkpoints/<name>``.

    Every key and shape of the real file is there; the classifier (unused by LPIPS) is a zero tensor expanded to
    its shape, so the file is small.
    """
    home = tmp_path_factory.mktemp("torch_home")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.alexnet().state_dict().items()}
    g = torch.Generator().manual_seed(1)
    state = {
        k: torch.randn(s, generator=g) * 0.05 if k.startswith("features") else torch.zeros(1).expand(s)
        for k, s in shapes.items()
    }
    path = home / "hub" / "checkpoints" / NAME
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


@pytest.fixture
def torch_home(monkeypatch, random_alexnet) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(random_alexnet.parents[2]))
    return random_alexnet


def _unchained(err: BaseException) -> bool:
    """No 'during handling of the above exception' traceback soup behind the error."""
    return err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_expected_location_follows_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert backbone_file("alex") == tmp_path / "hub" / "checkpoints" / NAME


def test_missing_weights_offline_give_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(LPIPSWeightsError, match=NAME) as info:
        load_lpips(download=False)
    text = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints") in text and "download.pytorch.org/models/" + NAME in text
    assert _unchained(info.value)


def test_failed_download_gives_the_same_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(LPIPSWeightsError, match=r"could not be downloaded \(no internet\)") as info:
        load_lpips()
    assert NAME in str(info.value) and str(tmp_path / "hub" / "checkpoints") in str(info.value)
    assert _unchained(info.value)


def test_file_that_fails_its_checksum_is_refused(torch_home):
    with pytest.raises(LPIPSWeightsError, match="does not match the checksum in its name"):
        load_lpips()


def test_loading_path_with_a_random_weight_file(torch_home):
    model = load_lpips(allow_unverified=True)
    assert not model.reportable and model.weights == str(torch_home)
    state = torch.load(torch_home, weights_only=True)
    loaded = model.module.state_dict()
    assert torch.equal(loaded["net.slice1.0.weight"], state["features.0.weight"])
    assert torch.equal(loaded["net.slice5.10.bias"], state["features.10.bias"])
    # Same network as the lpips package's own, given the same backbone weights.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    stock.net.load_state_dict(model.module.net.state_dict())
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        want = stock(x * 2 - 1, y * 2 - 1).flatten()
    assert torch.allclose(lpips_distance(model, x, y), want, atol=1e-6)
    assert torch.allclose(lpips_distance(model, x, x), torch.zeros(2), atol=1e-7)


def test_verified_file_is_reportable(torch_home, tmp_path, monkeypatch):
    prefix = hashlib.sha256(torch_home.read_bytes()).hexdigest()[:8]
    named = tmp_path / f"alexnet-owt-{prefix}.pth"
    shutil.copy(torch_home, named)
    monkeypatch.setitem(perceptual._BACKBONES, "alex", f"https://download.pytorch.org/models/{named.name}")
    model = load_lpips(cache_dir=tmp_path)
    assert model.reportable and model.weights == str(named)


def test_unreadable_file(tmp_path):
    (tmp_path / NAME).write_bytes(b"partial download")
    with pytest.raises(LPIPSWeightsError, match="cannot read the LPIPS backbone file"):
        load_lpips(cache_dir=tmp_path, allow_unverified=True)


def test_random_backbone_numbers_are_never_reported():
    model = load_lpips(backbone="random")
    assert not model.reportable and model.weights == "random"
    video = with_brightness(scene(8, 32, 32), 0.2)
    with pytest.raises(UnreportableError, match="random or unverified"):
        drift_report(video, lpips=model)
    report = drift_report(video, lpips=model, allow_unreportable=True)
    entry = report["videos"][0]
    assert entry["lpips"] == {"net": "alex", "weights": "random", "reportable": False}
    assert "not reportable" in format_table(report)
    anchor, adjacent = entry["series"]["lpips_anchor"], entry["series"]["lpips_adjacent"]
    assert anchor[0] == pytest.approx(0.0, abs=1e-7) and adjacent[0] is None and len(anchor) == 8


def test_measure_lpips_series_match_direct_calls():
    model = load_lpips(backbone="random")
    x = scene(6, 32, 40, seed=2)
    vm = measure(x, lpips=model, lpips_size=None, batch_size=4)
    frames = torch.from_numpy(x.transpose(0, 3, 1, 2)).float()
    np.testing.assert_allclose(
        vm.series["lpips_anchor"], lpips_distance(model, frames, frames[:1]), atol=1e-6
    )
    np.testing.assert_allclose(
        vm.series["lpips_adjacent"][1:], lpips_distance(model, frames[1:], frames[:-1]), atol=1e-6
    )
    assert vm.lpips == {"net": "alex", "weights": "random", "reportable": False}
