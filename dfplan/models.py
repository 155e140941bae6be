"""Model types by name, as stored in checkpoints: the DF RNN, Diffuser's temporal U-Net, the BC policy."""

from __future__ import annotations

from dfplan.bc.model import BCConfig, BCPolicy
from dfplan.df.model import DFRNN, DFConfig
from dfplan.diffuser.model import DiffuserConfig, DiffuserModel

MODEL_TYPES = {"df_rnn": (DFRNN, DFConfig), "diffuser": (DiffuserModel, DiffuserConfig), "bc": (BCPolicy, BCConfig)}


def build_model(name: str, **config):
    """Instantiate a model type from plain keyword config (as stored in checkpoints)."""
    if name not in MODEL_TYPES:
        raise ValueError(f"unknown model type {name!r}; choose one of {sorted(MODEL_TYPES)}")
    model_cls, config_cls = MODEL_TYPES[name]
    fields = set(config_cls.__dataclass_fields__)
    if "objective" in config:  # checkpoints written before the field was named `prediction`
        config = dict(config)
        config["prediction"] = config.pop("objective")
    unknown = set(config) - fields
    if unknown:
        raise ValueError(f"unknown {name} config keys {sorted(unknown)}; valid keys: {sorted(fields)}")
    return model_cls(config_cls(**config))


__all__ = ["MODEL_TYPES", "build_model"]
