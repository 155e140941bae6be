from .df import DFPlanner, load_planner
from .df_sampler import SamplerConfig, sample

__all__ = ["DFPlanner", "SamplerConfig", "load_planner", "sample"]
