"""Device choice: 'auto' takes CUDA when present, else CPU. Never a hard-coded cuda:0."""

from __future__ import annotations

import torch

from dfplan.errors import UserError


def resolve_device(device: str | torch.device = "auto", rank: int = 0) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UserError(f"device={device!r} is not a device; choose auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={device!r} asked for CUDA, but torch sees no GPU; use device=cpu or device=auto")
    return dev
