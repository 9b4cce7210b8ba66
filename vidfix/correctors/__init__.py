"""Correctors: one file each, all behind :class:`vidfix.protocols.Corrector`."""

from vidfix.correctors.dcw import DCW
from vidfix.correctors.eps_scaling import EpsScaling
from vidfix.correctors.identity import Identity

__all__ = ["DCW", "EpsScaling", "Identity"]
