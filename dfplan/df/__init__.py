"""Diffusion Forcing: the causal RNN model (`model`), its sampler (`sampler`), the planner (`planner`) and the MPC
controller (`controller`). This package file imports none of them: the tree search wing (`dfplan.search`) builds on
the sampler, and the planner on the search, so importing the sampler must not import the planner."""
