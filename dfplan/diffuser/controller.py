"""DiffuserController: execute a Diffuser plan the paper's way (track the planned states), or replan, or execute
the plan's own diffused actions (the variant the paper reports failing)."""

from __future__ import annotations

import numpy as np
import torch

from dfplan.diffuser.planner import MODES, DiffuserPlanner
from dfplan.errors import UserError
from dfplan.tasks.base import NativeObservation
from dfplan.tasks.pointmaze import track_action
from dfplan.types import Controller, Plan, safe_actions, snap_to_goal, split_observation


def tracking_target(states: np.ndarray, t: int, rest=None) -> np.ndarray:
    """The state to steer to at step t since planning: states[t+1]; past the plan, the last state made to hold still
    by `rest` (states [N, Ds] -> [N, Ds], a task's `Task.rest_state`), by default the last position of a
    [position, velocity] state with zero velocity.

    states [N, H, Ds] -> [N, Ds]."""
    if t + 1 < states.shape[1]:
        return states[:, t + 1]
    target = states[:, -1].copy()
    if rest is not None:
        return rest(target)
    target[:, states.shape[-1] // 2:] = 0.0
    return target


class DiffuserController(Controller):
    """The controller (`dfplan.types.Controller`) around a `DiffuserPlanner`.

    mode="plan_once": plan at the first act() after reset, then track the planned states (the paper's setting).
    mode="replan": the same, replanning every `replan_every` env steps.
    mode="actions": execute the plan's own diffused actions, replanning when they run out (or every
        `replan_every` steps if given).
    All envs of a batched observation step in lockstep and are planned together.
    """

    def __init__(self, planner: DiffuserPlanner, mode: str = "plan_once", replan_every: int | None = None,
                 tracker=None, reacher=None, rest=None, snap_radius: float | None = None,
                 grasp_align: float | None = None):
        """tracker: (states [N, Ds], target states [N, Ds], planned actions [N, Da]) -> actions, the task's
        controller toward the next planned state; default Diffuser's maze2d one (`track_action`).
        rest: the state to hold once the plan has run out, from its last one (`tracking_target`); give it with a
        task's tracker (`Task.rest_state`).
        reacher: a learned low-level policy (`dfplan.lowlevel.GoalReacher`) given the planned state `reacher.k`
        steps ahead instead (the last planned state once fewer remain); replaces the tracker.
        snap_radius: with the low-level policy, each goal object planned (or already) within this distance of its
        goal is handed the goal itself (as `MPCController`'s; `dfplan.types.snap_to_goal`); None = off.
        grasp_align: with the low-level policy, the task's grasp rules refine the target (as `MPCController`'s;
        `Task.align_grasp`); None or 0 = off."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "replan" and replan_every is None:
            raise ValueError("mode='replan' needs replan_every (env steps between plans)")
        if replan_every is not None and replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {replan_every}")
        if reacher is not None and mode == "actions":
            raise ValueError("mode='actions' executes the plan's own actions: a low-level policy does not apply")
        if reacher is not None:
            reacher.check_reads(planner.obs_dim, "Diffuser")
        grasp_align = grasp_align or None  # 0 turns a stored alignment off
        for key, value in (("snap_radius", snap_radius), ("grasp_align", grasp_align)):
            if value is not None and (reacher is None or planner.task is None):
                raise UserError(f"{key} applies to a Diffuser plan reached by the low-level policy "
                                f"(execution=lowlevel), on the planner's task")
        if grasp_align is not None:
            planner.task.check_grasp_align()
        if tracker is None and reacher is None and planner.obs_dim % 2:
            raise ValueError(f"tracking needs states [position, velocity] of even size, got obs_dim {planner.obs_dim}")
        self.planner, self.mode, self.replan_every = planner, mode, replan_every
        self.tracker, self.reacher, self.rest = tracker or track_action, reacher, rest
        self.snap_radius, self.grasp_align = snap_radius, grasp_align
        self.failures = 0  # rows whose action was not finite (replaced by zeros)
        self.n_plans, self.plan_seconds = 0, 0.0
        self.adapter = planner.task.observation_adapter() if planner.task is not None else NativeObservation()
        self.reset()

    @property
    def meta(self) -> dict:
        """What the planner's checkpoint says of itself (path, env, reference scores)."""
        return self.planner.meta

    def settings_record(self) -> dict:
        """Its mode, replanning period and plan length, and the low-level policy when one executes the plan."""
        out = {"mode": self.mode, "replan_every": self.replan_every, "horizon": self.planner.horizon}
        if self.reacher is not None:
            out.update(execution="lowlevel", lowlevel=self.reacher.meta.get("path"), snap_radius=self.snap_radius,
                       grasp_align=self.grasp_align)
        return out

    def reset(self, seed: int | None = None) -> None:
        """Forget the plan; the next act() plans anew. `seed` reseeds the planner's sampling noise."""
        self.plan: Plan | None = None
        self.states = self.actions = None  # the current plan as numpy, [N, H, Ds] / [N, H-1, Da]
        self.t = 0  # env steps since the current plan was made
        self.history: list[np.ndarray] = []  # plans made this episode (states, numpy) for pictures
        self.adapter.reset()
        if seed is not None:
            self.planner.generator = torch.Generator(self.planner.device).manual_seed(seed)

    def _needs_plan(self, n: int) -> bool:
        if self.plan is None:
            return True
        if len(self.states) != n:
            raise ValueError(f"act() got {n} observations but the current plan is for {len(self.states)}; call reset()")
        if self.replan_every is not None and self.mode != "plan_once" and self.t >= self.replan_every:
            return True
        return self.mode == "actions" and self.t >= self.actions.shape[1]

    def _make_plan(self, state: np.ndarray, goal: np.ndarray) -> None:
        self.plan = self.planner.plan(torch.from_numpy(state), torch.from_numpy(goal))
        self.states = self.plan.states.cpu().numpy()
        self.actions = self.plan.actions.cpu().numpy()
        self.history.append(self.states)
        self.t = 0
        self.n_plans += 1
        self.plan_seconds += self.plan.info["seconds"]

    def act(self, obs, goal=None) -> np.ndarray:
        """A Gymnasium dict observation (single or batched) -> action [Da] or [N, Da] in [-1, 1], always finite.
        The env's own observation works too (the task's `observation_adapter`; OGBench: `goal=info["goal"]`)."""
        state, goal, batched = split_observation(self.adapter(obs, goal))
        if goal is None:
            raise ValueError("Diffuser needs the goal: pass the dict observation with a 'desired_goal' entry")
        if self._needs_plan(len(state)):
            self._make_plan(state, goal)
        if self.mode == "actions":
            action = self.actions[:, self.t]
        elif self.reacher is not None:
            ahead = min(self.t + self.reacher.k, self.states.shape[1] - 1)
            task = self.planner.task
            target = snap_to_goal(self.states[:, ahead], goal, task.goal_dims, task.goal_objects, self.snap_radius,
                                  current=state)
            if self.grasp_align is not None:
                target = task.align_grasp(state, target, self.grasp_align)
            action = self.reacher.act_toward(state, target)
        else:
            planned = self.actions[:, min(self.t, self.actions.shape[1] - 1)]
            action = self.tracker(state, tracking_target(self.states, self.t, self.rest), planned)
        self.t += 1
        action, bad = safe_actions(action)
        self.failures += bad
        return action if batched else action[0]
