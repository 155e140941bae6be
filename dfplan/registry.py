"""The registry of methods: model types by the name checkpoints store, and the one factory that says which method a
checkpoint holds (`load_planner`: a DF or a Diffuser planner). Each wing owns its model type (`MODEL_TYPE` in its
`model.py`) and its loader; this module only lists them."""

from __future__ import annotations

from pathlib import Path

import torch

from dfplan.bc.model import MODEL_TYPE as BC
from dfplan.checkpoint import load_checkpoint, resolve_checkpoint
from dfplan.df.model import MODEL_TYPE as DF_RNN
from dfplan.df.planner import DFPlanner, load_df_planner
from dfplan.diffuser.model import MODEL_TYPE as DIFFUSER
from dfplan.diffuser.planner import DiffuserPlanner, load_diffuser
from dfplan.errors import UserError
from dfplan.lowlevel.model import MODEL_TYPE as LOWLEVEL
from dfplan.types import ModelType

MODEL_TYPES: dict[str, ModelType] = {t.name: t for t in (DF_RNN, DIFFUSER, BC, LOWLEVEL)}


def model_type(name: str) -> ModelType:
    if name not in MODEL_TYPES:
        raise ValueError(f"unknown model type {name!r}; choose one of {sorted(MODEL_TYPES)}")
    return MODEL_TYPES[name]


def complete_config(name: str, config: dict) -> dict:
    """A stored model config of type `name` in today's form (`ModelType.complete_config`)."""
    return model_type(name).complete_config(config)


def build_model(name: str, **config):
    """Instantiate a model type from plain keyword config (as stored in checkpoints)."""
    return model_type(name).build(**config)


def load_planner(checkpoint, device: str | torch.device = "auto", ema: bool = True,
                 **overrides) -> DFPlanner | DiffuserPlanner:
    """A ready planner from a checkpoint file or a shipped name, from any directory, of the method the checkpoint
    holds:

        dfplan.load_planner("pointmaze-umaze")              # the task's default shipped checkpoint
        dfplan.load_planner("runs/umaze/final.pt", guidance_scale=1.0, horizon=16)

    `overrides` are DF settings (`dfplan.settings`) that replace the checkpoint's tuned values. A Diffuser checkpoint
    gives a `DiffuserPlanner` (it takes no settings)."""
    path: Path = resolve_checkpoint(checkpoint)
    if load_checkpoint(path).get("model_type") == DIFFUSER.name:
        if overrides:
            raise UserError(f"{path} is a Diffuser checkpoint: DF settings {sorted(overrides)} do not apply")
        return load_diffuser(path, device=device)
    return load_df_planner(path, device=device, ema=ema, **overrides)


__all__ = ["MODEL_TYPES", "build_model", "complete_config", "load_planner", "model_type"]
