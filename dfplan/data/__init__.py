from .episodes import DatasetNotFoundError, Trajectory, chain_episodes, episodes_as_arrays, load_minari, split_episodes
from .normalizer import Normalizer
from .windows import Batch, DatasetSplits, WindowSampler, load_runs

__all__ = ["DatasetNotFoundError", "Trajectory", "chain_episodes", "episodes_as_arrays", "load_minari",
           "split_episodes", "Normalizer", "Batch", "DatasetSplits", "WindowSampler", "load_runs"]
