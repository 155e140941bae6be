"""Checkpoints: plain dicts of tensors and Python scalars, written atomically, loaded with `weights_only=True`;
named by a path, a shipped name or a task name (`resolve_checkpoint`); `load_model` is the one loader of every
model type (DF, Diffuser, BC, the low-level policy)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

import dfplan
from dfplan.data import Normalizer, load_minari
from dfplan.errors import CheckpointError, UserError, choices_hint
from dfplan.shipped import shipped_dir, shipped_names, shipped_path
from dfplan.tasks import Task, get_task, task_from_spec, task_names
from dfplan.types import ModelType

FORMAT = "dfplan-checkpoint"
FORMAT_VERSION = 1


def resolve_checkpoint(name_or_path, planner: str = "df") -> Path:
    """A checkpoint file from a path, a shipped name ('pointmaze-umaze-dwell') or a task name ('pointmaze-umaze':
    the task's default shipped checkpoint for `planner`), from any working directory."""
    path = Path(name_or_path).expanduser()
    if path.is_file() or path.suffix == ".pt" or "/" in str(name_or_path):
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist; pass a shipped name ({shipped_names()}) or "
                                  f"train one with: dfplan-train env=<task> out=<dir>")
        return path
    name = str(name_or_path)
    if name in shipped_names():
        return shipped_path(name)
    if name in task_names():
        kind = "diffuser" if planner.startswith("diffuser") else planner if planner in ("bc", "lowlevel") else "df"
        return get_task(name).shipped_checkpoint(kind)
    raise CheckpointError(f"{name!r} is neither a checkpoint file nor a shipped name"
                          f"{choices_hint(name, shipped_names())}; shipped: {shipped_names()}")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write `payload` (plus format tags) to `path` via a temp file + rename, so a kill never leaves half a file
    under `path` (a kill before the rename leaves `.{name}.tmp-{pid}`: `remove_temp_files` clears those)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": dfplan.__version__, **payload}
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(full, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or an interrupt: leave no half-written temp file behind
        raise
    return path


def remove_temp_files(folder: str | Path, names=("last.pt", "final.pt")) -> list[Path]:
    """Delete the temp files `save_checkpoint` leaves when killed mid-write (`.{name}.tmp-*` for each of `names`).
    Call it only where no other process is writing these checkpoints (e.g. while holding the run folder's lock)."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.tmp-*"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load safely (no arbitrary unpickling); say clearly what is wrong with a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with: dfplan-train env=<task> out=<dir>")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated, corrupt or unsafe files
        raise CheckpointError(
            f"cannot load {path} as a dfplan checkpoint: it is corrupt, truncated, or holds objects that are not "
            f"safe to unpickle ({type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]})"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dfplan checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer dfplan (format {ckpt['format_version']}); upgrade dfplan")
    for key in ("model", "ema"):
        bad = [n for n, v in (ckpt.get(key) or {}).items() if torch.is_tensor(v) and v.is_floating_point()
               and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"{path}: the {key} weights hold NaN or inf (first: {bad[0]}); the run diverged or "
                                  f"the file is damaged: use an earlier checkpoint")
    return ckpt


def export_for_inference(src: str | Path, dst: str | Path, planner: dict | None = None, half: bool = False,
                         execution: dict | None = None) -> Path:
    """A small copy of a training checkpoint: EMA weights only (no optimizer), plus tuned planner settings (DF:
    `planner`, `DFSettings.as_dict()`; Diffuser: `execution`, see `dfplan.diffuser.planner.DiffuserPlanner`).

    `half=True` stores the floating-point weights as float16 (half the size; loading casts them back to the
    model's float32 parameters).
    """
    ckpt = load_checkpoint(src)
    dropped = ("optimizer", "model", "format", "format_version", "package_version")
    keep = {k: v for k, v in ckpt.items() if k not in dropped}
    if half:
        keep["ema"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["ema"].items()}
    keep["model"] = keep["ema"]
    keep["exported_from"] = str(src)
    if not keep.get("ref_scores"):  # older runs: take the reference scores from the dataset's metadata
        meta = load_minari(ckpt["dataset_id"]).storage.metadata
        keep["ref_scores"] = [meta.get("ref_min_score"), meta.get("ref_max_score")]
    if planner is not None:
        keep["planner"] = planner
    if execution is not None:
        keep["execution"] = execution
    return save_checkpoint(dst, keep)


@dataclass
class LoadedModel:
    """A checkpoint's model with what it needs to act: its normalizer, its task and what it says of itself."""

    model: torch.nn.Module
    normalizer: Normalizer
    task: Task | None  # the task it was trained for (None when unknown)
    meta: dict  # path, dataset id, env, reference scores, step
    checkpoint: dict


def load_model(checkpoint, model_type: ModelType, ema: bool = True, map_location="cpu") -> LoadedModel:
    """The one loader of every model type: a checkpoint file or shipped name -> its model (EMA weights unless
    `ema=False`), checked to be of `model_type` (else a one-line error naming the command that trains one)."""
    path = resolve_checkpoint(checkpoint, model_type.name)
    ckpt = load_checkpoint(path, map_location=map_location)
    if ckpt.get("model_type") != model_type.name:
        raise CheckpointError(f"{path} holds a {ckpt.get('model_type')!r} model, not a {model_type.name} one; train "
                              f"one with: {model_type.train_hint}")
    model = model_type.build(**ckpt["model_config"])
    model.load_state_dict(ckpt["ema" if ema else "model"])
    return LoadedModel(model, Normalizer.from_state_dict(ckpt["normalizer"]), checkpoint_task(ckpt),
                       checkpoint_meta(ckpt, path), ckpt)


def checkpoint_task(ckpt: dict) -> Task | None:
    """The task a checkpoint was trained for (stored spec, or the env name of older checkpoints); None if unknown."""
    if ckpt.get("task"):
        return task_from_spec(ckpt["task"])
    try:
        return get_task(ckpt.get("env"))
    except UserError:
        return None


def checkpoint_meta(ckpt: dict, path) -> dict:
    ref = ckpt.get("ref_scores")
    return {"path": str(path), "dataset_id": ckpt.get("dataset_id"), "env": ckpt.get("env"),
            "ref_scores": list(ref) if ref and None not in ref else None, "step": ckpt.get("step")}


__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "LoadedModel", "checkpoint_meta", "checkpoint_task",
           "export_for_inference", "load_checkpoint", "load_model", "remove_temp_files", "resolve_checkpoint",
           "save_checkpoint", "shipped_dir", "shipped_names", "shipped_path"]
