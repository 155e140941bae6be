"""dfplan: planning and control with RNN Diffusion Forcing."""

__version__ = "0.1.0"
