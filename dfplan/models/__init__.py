"""Models: the causal DF RNN and (in `temporal_unet`) Diffuser's temporal U-Net. `build_model` picks by name."""

from __future__ import annotations

from .df_rnn import DFRNN, DFConfig
from .tokens import from_tokens, to_tokens, token_mask

MODEL_TYPES = {"df_rnn": (DFRNN, DFConfig)}


def register_model(name: str, model_cls, config_cls) -> None:
    MODEL_TYPES[name] = (model_cls, config_cls)


def build_model(name: str, **config):
    """Instantiate a model type from plain keyword config (as stored in checkpoints)."""
    if name not in MODEL_TYPES:
        raise ValueError(f"unknown model type {name!r}; choose one of {sorted(MODEL_TYPES)}")
    model_cls, config_cls = MODEL_TYPES[name]
    fields = set(config_cls.__dataclass_fields__)
    unknown = set(config) - fields
    if unknown:
        raise ValueError(f"unknown {name} config keys {sorted(unknown)}; valid keys: {sorted(fields)}")
    return model_cls(config_cls(**config))


__all__ = ["DFRNN", "DFConfig", "MODEL_TYPES", "build_model", "register_model", "from_tokens", "to_tokens", "token_mask"]

from .temporal_unet import DiffuserConfig, DiffuserModel  # noqa: E402
register_model("diffuser", DiffuserModel, DiffuserConfig)
