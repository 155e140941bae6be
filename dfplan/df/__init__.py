"""Diffusion Forcing: the causal RNN model, its sampler, the planner and the MPC controller."""

from dfplan.df.controller import MPCController
from dfplan.df.model import DFRNN, DFConfig
from dfplan.df.planner import DFPlanner, load_planner

__all__ = ["DFConfig", "DFPlanner", "DFRNN", "MPCController", "load_planner"]
