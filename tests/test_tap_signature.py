"""The tap keeps the scheduler's method signatures (pipelines inspect them to choose arguments)."""

from __future__ import annotations

import inspect

import diffusers
import pytest

from vidfix import SUPPORTED_SCHEDULERS, Identity, tap


@pytest.mark.parametrize("name", list(SUPPORTED_SCHEDULERS))
def test_tapped_methods_keep_their_signatures(name):
    scheduler = getattr(diffusers, name)()
    tapped = tap(scheduler, Identity())
    for method in ("step", "convert_model_output", "set_timesteps"):
        if hasattr(scheduler, method):
            assert inspect.signature(getattr(tapped, method)) == inspect.signature(getattr(scheduler, method))
            assert getattr(tapped, method).__name__ == method


def test_cogvideox_sees_eta_and_generator():
    """CogVideoX passes ``eta`` and ``generator`` only if ``step`` names them (pipeline_cogvideox.py)."""
    tapped = tap(diffusers.CogVideoXDPMScheduler(), Identity())
    assert {"eta", "generator"} <= set(inspect.signature(tapped.step).parameters)
