"""Test setup: one torch thread (two oversubscribe a 2-core box), deterministic algorithms where cheap."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

torch.set_num_threads(1)
