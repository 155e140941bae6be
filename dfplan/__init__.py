"""dfplan: planning and control with RNN Diffusion Forcing.

    import dfplan
    planner = dfplan.load_planner("pointmaze-umaze")          # a shipped name or a checkpoint path; CUDA if present
    plan = planner.plan(obs, goal, horizon=16)                 # obs [B, 4], goal [B, 2] -> Plan in env steps
    controller = dfplan.MPCController(planner)                 # the checkpoint's tuned settings
    env = dfplan.make_env("pointmaze-umaze")                   # a Gymnasium env of any task
    run = dfplan.evaluate("pointmaze-umaze", episodes=20)      # closed-loop evaluation, one summary
"""

__version__ = "0.13.0"


def load_planner(checkpoint, device="auto", **settings):
    """A planner from a checkpoint path or a shipped name (see `dfplan.df.planner.load_planner`)."""
    from dfplan.df.planner import load_planner as _load

    return _load(checkpoint, device=device, **settings)


def make_env(task: str = "pointmaze-umaze", goal: str | None = None, **kwargs):
    """The Gymnasium env of a task (`goal`: fixed | random for mazes)."""
    from dfplan.tasks import get_task

    return get_task(task).make_env(goal=goal, **kwargs)


def evaluate(env: str | None = None, **kwargs):
    """Closed-loop evaluation (see `dfplan.run.evaluate`)."""
    from dfplan.run import evaluate as _evaluate

    return _evaluate(env, **kwargs)


def __getattr__(name):  # lazy, so `import dfplan` stays light
    if name == "MPCController":
        from dfplan.df.controller import MPCController

        return MPCController
    if name == "get_task":
        from dfplan.tasks import get_task

        return get_task
    raise AttributeError(name)
