"""Build a controller by name from a checkpoint: the `planner=` choice of dfplan-eval and benchmarks."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dfplan.checkpoint import CheckpointError, load_checkpoint

PLANNERS = ("df", "diffuser", "diffuser-replan", "diffuser-actions")
DIFFUSER_MODES = {"diffuser": "plan_once", "diffuser-replan": "replan", "diffuser-actions": "actions"}
VARIANTS = ("df", "dwell", "diffuser")


def shipped_checkpoint(env: str, variant: str = "df") -> Path:
    """Path of a small checkpoint shipped inside the package for `env` (see README for the command that made it):
    variant "df" (`<env>.pt`), "diffuser" (`<env>-diffuser.pt`) or "dwell" (DF on the dwell dataset, `<env>-dwell.pt`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown checkpoint variant {variant!r}; choose one of {list(VARIANTS)}")
    name = f"{env}.pt" if variant == "df" else f"{env}-{variant}.pt"
    path = Path(str(resources.files("dfplan") / "checkpoints" / name))
    if not path.exists():
        hint = {"df": "", "diffuser": " model=diffuser train=diffuser_cpu",
                "dwell": f" dataset=dfplan/pointmaze/{env.removeprefix('pointmaze-')}-dwell100-v0"}.get(variant, "")
        raise CheckpointError(f"no shipped {variant} checkpoint for {env} ({path}); pass checkpoint=<path> "
                              f"from: dfplan-train env={env}{hint}")
    return path


def controller_settings(checkpoint) -> dict:
    """The planner/controller settings tuned for a checkpoint (stored in it by `dfplan.checkpoint.export`)."""
    return load_checkpoint(checkpoint).get("planner", {})


OBJECTIVES = ("goal_distance", "geodesic")


def guidance_objective(name: str, env: str | None):
    """goal -> objective builder for MPCController (None: the planner's own goal distance)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {list(OBJECTIVES)}")
    if name == "goal_distance":
        return None
    if env is None:
        raise ValueError("objective='geodesic' needs the maze: pass env=<maze name>")
    from dfplan.envs import get_maze
    from dfplan.envs.maze import MazeLayout
    from dfplan.guidance import GeodesicGuide

    return GeodesicGuide(MazeLayout(get_maze(env).maze_map))


def make_controller(planner: str, checkpoint, device="auto", horizon: int | None = None,
                    replan_every: int | None = None, memory: bool | None = None, objective: str | None = None,
                    env: str | None = None, memory_tokens: int | None = None, **sampler_overrides):
    """A controller with reset(seed)/act(obs); None arguments take the checkpoint's tuned settings.

    objective (DF): "goal_distance" (the paper's, maze-agnostic) or "geodesic" (shortest-path distance around
    the walls of `env`'s maze; uses the map).
    """
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
                             memory=tuned.get("memory", True) if memory is None else memory,
                             memory_tokens=tuned.get("memory_tokens") if memory_tokens is None else memory_tokens,
                             objective=guidance_objective(objective or tuned.get("objective", "goal_distance"), env))
    from dfplan.planners.diffuser import DiffuserController, load_diffuser

    mode = DIFFUSER_MODES[planner]
    every = replan_every or (64 if mode == "replan" else None)
    return DiffuserController(load_diffuser(checkpoint, device=device), mode=mode, replan_every=every)
