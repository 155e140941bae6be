"""dfplan: planning and control with RNN Diffusion Forcing.

    import dfplan
    planner = dfplan.load_planner("pointmaze-umaze")          # a shipped name or a checkpoint path; CUDA if present
    plan = planner.plan(obs, goal, horizon=16)                 # obs [B, 4], goal [B, 2] -> Plan in env steps
    controller = dfplan.MPCController(planner)                 # the checkpoint's tuned settings
    env = dfplan.make_env("pointmaze-umaze")                   # a Gymnasium env of any task
    run = dfplan.evaluate("pointmaze-umaze", episodes=20)      # closed-loop evaluation, one summary

These names are looked up on first use (PEP 562): `import dfplan` stays light, and every module of the package (the
environments in `dfplan.envs` among them) can import `dfplan.errors` without importing all the others first.
"""

import importlib

__version__ = "0.23.0"

_API = {  # name -> the module that defines it
    "load_planner": "dfplan.registry",
    "MPCController": "dfplan.df.controller",
    "evaluate": "dfplan.run",
    "get_task": "dfplan.tasks",
}


def make_env(task: str = "pointmaze-umaze", goal: str | None = None, **kwargs):
    """The Gymnasium env of a task (`goal`: fixed | random for mazes)."""
    return __getattr__("get_task")(task).make_env(goal=goal, **kwargs)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'dfplan' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
