"""The checkpoints shipped in the package: their folder, their names (file stems) and the path of one by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dfplan.errors import CheckpointError, choices_hint


def shipped_dir() -> Path:
    return Path(str(resources.files("dfplan") / "checkpoints"))


def shipped_names() -> list[str]:
    """Names of the checkpoints shipped in the package (file stems), e.g. 'pointmaze-umaze-dwell'."""
    return sorted(p.stem for p in shipped_dir().glob("*.pt"))


def shipped_path(name: str, train_hint: str = "dfplan-train") -> Path:
    path = shipped_dir() / f"{name}.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint named {name!r} ships with dfplan{choices_hint(name, shipped_names())}; "
                              f"shipped: {shipped_names()}; or train one with: {train_hint}")
    return path
