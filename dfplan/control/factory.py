"""Build a controller by name from a checkpoint: the `planner=` choice of dfplan-eval and benchmarks."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dfplan.checkpoint import CheckpointError, load_checkpoint

PLANNERS = ("df", "diffuser", "diffuser-replan", "diffuser-actions")
DIFFUSER_MODES = {"diffuser": "plan_once", "diffuser-replan": "replan", "diffuser-actions": "actions"}


def shipped_checkpoint(env: str, planner: str = "df") -> Path:
    """Path of the small checkpoint shipped inside the package for `env` (see README for the command that made it)."""
    name = f"{env}.pt" if planner == "df" else f"{env}-diffuser.pt"
    path = Path(str(resources.files("dfplan") / "checkpoints" / name))
    if not path.exists():
        raise CheckpointError(f"no shipped {planner} checkpoint for {env} ({path}); pass checkpoint=<path> "
                              f"from: dfplan-train env={env}" + (" model=diffuser train=diffuser_cpu" if planner != "df" else ""))
    return path


def controller_settings(checkpoint) -> dict:
    """The planner/controller settings tuned for a checkpoint (stored in it by `dfplan.checkpoint.export`)."""
    return load_checkpoint(checkpoint).get("planner", {})


def make_controller(planner: str, checkpoint, device="auto", horizon: int | None = None,
                    replan_every: int | None = None, memory: bool | None = None, **sampler_overrides):
    """A controller with reset(seed)/act(obs); None arguments take the checkpoint's tuned settings."""
    if planner not in PLANNERS:
        raise ValueError(f"unknown planner {planner!r}; choose one of {list(PLANNERS)}")
    if planner == "df":
        from dfplan.control.mpc import MPCController
        from dfplan.planners.df import load_planner

        tuned = controller_settings(checkpoint).get("controller", {})
        overrides = {k: v for k, v in sampler_overrides.items() if v is not None}
        df = load_planner(checkpoint, device=device, **overrides)
        return MPCController(df, horizon=horizon or df.default_horizon,
                             replan_every=replan_every or tuned.get("replan_every"),
                             memory=tuned.get("memory", True) if memory is None else memory)
    from dfplan.planners.diffuser import DiffuserController, load_diffuser

    mode = DIFFUSER_MODES[planner]
    every = replan_every or (64 if mode == "replan" else None)
    return DiffuserController(load_diffuser(checkpoint, device=device), mode=mode, replan_every=every)
