"""Build a controller by method name: the one place where `planner=` of the CLI, the run API and the benchmarks
turns into a `dfplan.types.Controller` (`reset(seed)` / `act(obs)`, plus what evaluation reads)."""

from __future__ import annotations

import numpy as np

from dfplan.bc import load_bc
from dfplan.checkpoint import resolve_checkpoint
from dfplan.df.controller import MPCController
from dfplan.df.planner import DFPlanner
from dfplan.diffuser.controller import DiffuserController
from dfplan.diffuser.planner import load_diffuser
from dfplan.errors import UserError, check_choice, check_float
from dfplan.lowlevel import load_lowlevel
from dfplan.registry import load_planner
from dfplan.settings import CONTROLLER_KEYS, EXECUTIONS, check_keys
from dfplan.types import Controller, as_controller

DIFFUSER_MODES = {"diffuser": "plan_once", "diffuser-replan": "replan", "diffuser-actions": "actions"}
PLANNERS = ("df", *DIFFUSER_MODES, "bc", "expert", "random")
SHARED_WITH_DIFFUSER = ("snap_radius", "grasp_align")  # DF controller settings a Diffuser plan reached by the
#   low-level policy takes too


def make_controller(planner: str, task, checkpoint=None, variant: str | None = None, device="auto",
                    replan_every: int | None = None, execution: str | None = None, lowlevel: str | None = None,
                    **settings) -> Controller:
    """A controller for `task` (a `dfplan.tasks.Task`).

    planner: "df" (the MPC controller; `settings` override the checkpoint's tuned ones), "diffuser" (the execution
    its checkpoint was tuned for, `replan_every`, `snap_radius` and `grasp_align` overriding its values; given
    `execution`, and for checkpoints that store none, plan once + tracking, the paper's protocol), "diffuser-replan"
    (every `replan_every` steps, default 64),
    "diffuser-actions" (its own actions), "bc" (a behaviour-cloning policy), "expert" (the task's scripted expert)
    or "random" (uniform actions: the floor). checkpoint: a path or shipped name; None = the
    checkpoint shipped for the task (`variant` picks among the DF ones).
    execution: how DF and Diffuser (tracking modes) act on a plan: "actions" (DF's own actions; Diffuser's task
    tracker), "track" (the task's tracker) or "lowlevel" (a learned goal-conditioned policy, `lowlevel` = its
    checkpoint, None = the task's shipped one); None = the checkpoint's stored choice (DF, Diffuser) or the tracker.
    """
    check_choice("planner", planner, PLANNERS)
    if execution is not None:
        check_choice("execution", execution, EXECUTIONS)
        if planner in ("bc", "expert", "random", "diffuser-actions"):
            raise UserError(f"execution={execution} does not apply to planner={planner}: it acts by itself")
    if lowlevel is not None and execution != "lowlevel" and planner != "df":
        raise UserError("lowlevel= names the policy for execution=lowlevel; pass execution=lowlevel too")
    given = {k: v for k, v in settings.items() if v is not None}
    shared = {}  # the settings a Diffuser's low-level execution shares with DF's
    if planner in DIFFUSER_MODES and set(given) <= set(SHARED_WITH_DIFFUSER):
        shared = {k: check_float(k, v, 0.0) for k, v in given.items()}
    elif planner != "df" and given:
        raise UserError(f"DF settings {sorted(given)} do not apply to planner={planner}")
    if replan_every is not None and planner in ("bc", "expert", "random"):
        raise UserError(f"replan_every does not apply to planner={planner}: it acts at every step")
    if planner == "expert":
        return as_controller(task.expert())
    if planner == "random":
        return RandomController(task)
    kind = "diffuser" if planner in DIFFUSER_MODES else planner
    path = resolve_checkpoint(checkpoint, planner) if checkpoint is not None else task.shipped_checkpoint(kind, variant)
    if planner == "bc":
        return load_bc(path, device=device)
    if planner == "df":
        sampler_keys, controller = _split(settings)
        df = load_planner(path, device=device, **sampler_keys)
        if not isinstance(df, DFPlanner):
            raise UserError(f"{path} holds a {type(df).__name__.removesuffix('Planner')} model, not a DF one; pass "
                            f"planner=diffuser (or another checkpoint)")
        low, high = task.action_bounds
        return MPCController(df, replan_every=replan_every, action_low=low, action_high=high, execution=execution,
                             lowlevel=lowlevel, **controller)
    diffuser = load_diffuser(path, device=device)
    mode = DIFFUSER_MODES[planner]
    if planner == "diffuser" and execution is None and diffuser.execution:
        tuned = diffuser.execution
        mode, execution = tuned["mode"], tuned.get("execution")
        replan_every = tuned.get("replan_every") if replan_every is None else replan_every
        shared = {**{k: tuned.get(k) for k in SHARED_WITH_DIFFUSER}, **shared}
        if replan_every is not None and mode == "plan_once":
            mode = "replan"
    every = replan_every or (64 if mode == "replan" else None)
    reacher = None
    if execution == "lowlevel":
        reacher = load_lowlevel(lowlevel or task.shipped_checkpoint("lowlevel"), device=device)
    return DiffuserController(diffuser, mode=mode, replan_every=every,
                              tracker=None if reacher else task.track_action, reacher=reacher,
                              rest=task.rest_state, **shared)


def _split(settings: dict) -> tuple[dict, dict]:
    """(sampler settings for the planner, controller settings for the MPC controller); None = keep the tuned one."""
    given = {k: v for k, v in settings.items() if v is not None}
    check_keys(given)  # before a checkpoint loads; the values are checked against its stored settings
    return ({k: v for k, v in given.items() if k not in CONTROLLER_KEYS},
            {k: v for k, v in given.items() if k in CONTROLLER_KEYS})


class RandomController(Controller):
    """Uniform random actions from the task's action box, seeded by `reset(seed)`."""

    def __init__(self, task):
        space = task.make_env().action_space
        self.low, self.high = space.low, space.high
        self.rng = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs):
        batched = np.ndim(obs["observation"]) == 2
        n = len(obs["observation"]) if batched else 1
        actions = self.rng.uniform(self.low, self.high, size=(n, len(self.low))).astype(np.float32)
        return actions if batched else actions[0]
