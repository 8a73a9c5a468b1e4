"""The torch device a profile's `device` names: auto, cpu or cuda (the one probe of the machine's GPU)."""

from __future__ import annotations

import torch

from mia_nb.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU is a one-line ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: no CUDA GPU is available here, got {name!r} (use auto or cpu on this machine)")
    return torch.device(name)
