"""Model types by name, as stored in checkpoints: the DF RNN, Diffuser's temporal U-Net, the BC policy,
the goal-conditioned low-level policy."""

from __future__ import annotations

import dataclasses

from dfplan.bc.model import BCConfig, BCPolicy
from dfplan.df.model import DFRNN, DFConfig
from dfplan.diffuser.model import DiffuserConfig, DiffuserModel
from dfplan.lowlevel.model import LowLevelConfig, LowLevelPolicy

MODEL_TYPES = {"df_rnn": (DFRNN, DFConfig), "diffuser": (DiffuserModel, DiffuserConfig), "bc": (BCPolicy, BCConfig),
               "lowlevel": (LowLevelPolicy, LowLevelConfig)}


def complete_config(name: str, config: dict) -> dict:
    """A stored model config in today's form: renamed fields renamed, fields added since filled with their
    defaults (what the model was built with before they existed)."""
    if name not in MODEL_TYPES:
        raise ValueError(f"unknown model type {name!r}; choose one of {sorted(MODEL_TYPES)}")
    config = dict(config)
    if "objective" in config:  # checkpoints written before the field was named `prediction`
        config["prediction"] = config.pop("objective")
    fields = MODEL_TYPES[name][1].__dataclass_fields__
    defaults = {k: f.default for k, f in fields.items() if f.default is not dataclasses.MISSING}
    defaults |= {k: f.default_factory() for k, f in fields.items() if f.default_factory is not dataclasses.MISSING}
    return {**defaults, **config}


def build_model(name: str, **config):
    """Instantiate a model type from plain keyword config (as stored in checkpoints)."""
    config = complete_config(name, config)
    model_cls, config_cls = MODEL_TYPES[name]
    fields = set(config_cls.__dataclass_fields__)
    unknown = set(config) - fields
    if unknown:
        raise ValueError(f"unknown {name} config keys {sorted(unknown)}; valid keys: {sorted(fields)}")
    return model_cls(config_cls(**config))


__all__ = ["MODEL_TYPES", "build_model", "complete_config"]
