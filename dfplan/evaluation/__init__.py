"""Closed-loop evaluation of controllers on tasks (`run_episodes`), pictures (`plots`) and animations (`video`)."""

from dfplan.evaluation.rollouts import EvalResult, run_episodes

__all__ = ["EvalResult", "run_episodes"]
