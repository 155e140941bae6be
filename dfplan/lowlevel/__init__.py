"""A learned goal-conditioned low-level policy: it reaches a planned state k env steps ahead.

The published diffusion planners on manipulation (DF, MCTD) plan states and let such a policy produce the actions;
the DF MPC controller and Diffuser's controller hand it their plans with `execution=lowlevel`.
"""

from dfplan.lowlevel.model import LowLevelConfig, LowLevelPolicy
from dfplan.lowlevel.reacher import GoalReacher, load_lowlevel

__all__ = ["GoalReacher", "LowLevelConfig", "LowLevelPolicy", "load_lowlevel"]
