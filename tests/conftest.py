"""Shared fixtures: tiny on-disk datasets the tests write, and a one-thread torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_profile(tmp_path):
    """Write a YAML profile (text) to a temp file and return its path."""
    def write(text: str, name: str = "p.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write
