from .mpc import MPCController

__all__ = ["MPCController"]
