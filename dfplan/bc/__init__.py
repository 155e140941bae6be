"""Behaviour cloning: the floor every offline planner must beat (an MLP from observation to action, same data)."""

from dfplan.bc.controller import BCController, load_bc
from dfplan.bc.model import BCConfig, BCPolicy

__all__ = ["BCConfig", "BCController", "BCPolicy", "load_bc"]
