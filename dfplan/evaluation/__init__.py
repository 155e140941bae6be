from .rollouts import GOAL_RADIUS, EpisodeResult, EvalResult, evaluate

__all__ = ["GOAL_RADIUS", "EpisodeResult", "EvalResult", "evaluate"]
