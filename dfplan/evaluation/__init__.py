from .rollouts import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate"]
