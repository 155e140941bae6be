"""MPCController: replans online with the DF planner and executes the model's own actions, or hands its planned
states to a learned low-level policy (`execution="lowlevel"`, the way the published planners act on manipulation).

Memory: between replans the RNN latent is advanced with the tokens actually executed and observed (a causal
rollout over real history), so each plan is conditioned on the past, not only on the current state.
`memory=False` re-initializes the latent from the current observation at each replan (the paper's setting).
History guidance (the sampler's `history_guidance` w != 1, with memory): each plan combines the predictions after the
history latent and after a latent of the current observation alone, x0_now + w * (x0_hist - x0_now).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import asdict, replace
from typing import Callable

import numpy as np
import torch

from dfplan.df.planner import DFPlanner
from dfplan.errors import UserError
from dfplan.guidance import Objective, Penalized, revisit_penalty
from dfplan.lowlevel import GoalReacher, load_lowlevel
from dfplan.search.objects import ObjectChoice
from dfplan.tasks.base import NativeObservation
from dfplan.types import Controller, safe_actions, snap_to_goal, split_observation

log = logging.getLogger(__name__)


class MPCController(Controller):
    """The DF MPC controller: `reset(seed)`, `act(obs) -> action` (`dfplan.types.Controller`). Built from a planner
    alone it uses the settings tuned for the planner's checkpoint (horizon, replanning, memory, objective); keyword
    arguments override them (`dfplan.settings.ControllerSettings` documents each)."""

    def __init__(self, planner: DFPlanner, horizon: int | None = None, replan_every: int | None = None,
                 memory: bool | None = None, memory_tokens: int | None = None,
                 objective: str | Callable[[torch.Tensor], Objective] | None = None,
                 min_horizon: int | None = None, token_reach: float | None = None,
                 execution: str | None = None, lowlevel: str | GoalReacher | None = None,
                 subgoal_ahead: int | None = None, snap_radius: float | None = None, grasp_align: float | None = None,
                 object_choice: str | None = None, choice_horizon: int | None = None, goal: str | None = None,
                 revisit_cost: float | None = None, revisit_radius: float | None = None,
                 blocked_cost: float | None = None, blocked_reach: float | None = None,
                 max_episode_steps: int | None = None,
                 action_low: float = -1.0, action_high: float = 1.0,
                 seed: int | None = None):
        """
        horizon: planning horizon in tokens (shrinks to the episode's remaining time when `max_episode_steps` is set).
        replan_every: env steps between plans; None = one token (`planner.frame_stack` steps).
        memory: carry the RNN latent across replans (needs `replan_every` to be a multiple of `frame_stack`).
        memory_tokens: with memory, build the latent from only the last this-many executed tokens (re-encoded at
            each replan from the observation before them), so it never holds more history than the model was
            trained on; None = the whole episode.
        objective: a guidance objective by name (the planner's task lists them, e.g. "geodesic") or a builder
            goal [B, Dg] -> objective (e.g. `GeodesicGuide(layout)`).
        min_horizon, token_reach: variable horizon — each env's plan gets ceil(cost-to-go / token_reach) tokens,
            between min_horizon and horizon, where the cost-to-go is the objective's distance at the current state
            (distance objectives: goal_distance, geodesic). Envs that need the same horizon are planned together.
        execution: "actions" executes the plan's own actions; "lowlevel" gives a learned goal-conditioned policy the
            planned state `subgoal_ahead` env steps ahead at every step, until the next replan; "track" steers to the
            next planned state with the task's tracking controller (`Task.track_action`).
        lowlevel: with execution="lowlevel", the policy: a checkpoint path or shipped name, or a loaded
            `dfplan.lowlevel.GoalReacher`; None = the one shipped for the planner's task.
        subgoal_ahead: with execution="track", how many env steps ahead the planned state the tracker steers to lies
            (default 1: the next one; further ahead, a tracker that moves at full speed toward it cuts the plan's
            jitter); with execution="lowlevel", how many env steps ahead of now the planned state handed to the
            policy lies (1..k); None = the policy's k.
        snap_radius: with execution="track" or "lowlevel", each goal object (`Task.goal_objects`: the maze's point,
            Fetch's block, each cube) whose planned position in that target, or whose current position, lies within
            this distance of its goal gets the goal's exact position: the plan brings the object near, the known goal
            places it (and keeps it there when a plan turns away). None = off.
        grasp_align: with execution="track" or "lowlevel", the task's grasp rules refine the target
            (`Task.align_grasp`; OGBench cubes: an open gripper within this distance of a cube is turned to face its
            sides, and a gripper closed on nothing is told to open). None or 0 = off.
        object_choice, choice_horizon: given every object's goal (OGBench cubes with goal=whole), "search" plans
            `choice_horizon` tokens per unplaced object and moves the one the task's plan value ranks best until it
            is placed; "random" picks one at random; "given" plans for the goal as observed
            (`dfplan.search.objects.ObjectChoice`).
        goal: the goal mode of the planner's task the controller reads (OGBench cubes: "fixed", one cube's target at
            a time from our subgoal layer; "whole", every cube's, the papers' protocol): a plain env's goal is
            presented this way, and evaluation runs it when asked for no other.
        revisit_cost, revisit_radius: guidance charges each planned position `revisit_cost` per env step the episode
            has already spent near it (a Gaussian of radius `revisit_radius` over the goal dims of the executed path,
            recorded once per token): a plan that the straight line keeps leading into a dead end turns away from
            it. Uses no map. 0 = off.
        blocked_cost: with execution="track" or "lowlevel", an env step on which the task finds the point blocked
            (`Task.blocked`: it moved much less than its action commanded) records the target it was sent toward, and
            guidance charges planned positions near it `blocked_cost` per such step, like a visit (same radius): a
            plan that leads through a wall the point pressed against loses to one that goes round. Uses no map.
            0 = off. blocked_reach: the place recorded is on the way to that target, at most this far from the point
            (the wall itself rather than a target beyond it); None = the target.
        """
        named = objective if isinstance(objective, str) else None
        stored = planner.settings.controller
        if execution == "actions":  # a stored snap, alignment or blocked cost belongs to the stored execution's target
            stored = replace(stored, snap_radius=None, grasp_align=None, blocked_cost=0.0)
        settings = replace(stored, **{k: v for k, v in dict(
            horizon=horizon, replan_every=replan_every, memory=memory, memory_tokens=memory_tokens,
            objective=named, min_horizon=min_horizon, token_reach=token_reach, execution=execution,
            lowlevel=lowlevel if isinstance(lowlevel, str) else None, subgoal_ahead=subgoal_ahead,
            snap_radius=snap_radius, grasp_align=grasp_align, object_choice=object_choice,
            choice_horizon=choice_horizon, goal=goal, revisit_cost=revisit_cost, revisit_radius=revisit_radius,
            blocked_cost=blocked_cost, blocked_reach=blocked_reach).items()
            if v is not None})
        self.settings = settings
        self.planner = planner
        self.objective = objective if callable(objective) else planner.objective_builder(settings.objective)
        self.fs = planner.frame_stack
        self.horizon = settings.horizon
        self.replan_every = settings.replan_every or self.fs
        self.min_horizon, self.token_reach = settings.min_horizon, settings.token_reach
        shortest = self.horizon if self.min_horizon is None else self.min_horizon
        if self.replan_every > shortest * self.fs:
            raise UserError(f"replan_every={self.replan_every} exceeds the plan length {shortest * self.fs} steps "
                            f"({'min_horizon' if self.min_horizon else 'horizon'}={shortest} tokens x "
                            f"frame_stack={self.fs})")
        if self.min_horizon is not None and planner.sampler.warm_start_step:
            raise UserError("min_horizon (a variable horizon) cannot warm-start from the previous plan: "
                            "pass warm_start_step=0")
        if settings.memory and self.replan_every % self.fs:
            raise UserError(f"memory=true needs replan_every to be a multiple of frame_stack={self.fs}, "
                            f"got {self.replan_every}")
        self.memory, self.memory_tokens = settings.memory, settings.memory_tokens
        self.reacher = self._reacher(lowlevel) if settings.execution == "lowlevel" else None
        self.subgoal_ahead = None
        self.tracker = None
        if settings.execution == "track":
            if planner.task is None:
                raise UserError("execution=track needs the planner's task (its tracking controller)")
            self.tracker = planner.task.track_action
            self.subgoal_ahead = settings.subgoal_ahead or 1
        if self.reacher is not None:
            self.subgoal_ahead = settings.subgoal_ahead or self.reacher.k
            if self.subgoal_ahead > self.reacher.k:
                raise UserError(f"subgoal_ahead={self.subgoal_ahead} lies past the {self.reacher.k} steps the "
                                f"low-level policy was trained to reach; choose 1..{self.reacher.k}")
        self.snap_radius = settings.snap_radius
        if self.snap_radius is not None and self.reacher is None and self.tracker is None:
            raise UserError(f"snap_radius={self.snap_radius} moves the target a tracker or low-level policy steers "
                            f"to; execution={settings.execution} has none (use execution=track or lowlevel)")
        self.grasp_align = settings.grasp_align or None  # 0 turns a stored alignment off
        if self.grasp_align is not None:
            if self.reacher is None and self.tracker is None:
                raise UserError(f"grasp_align={self.grasp_align} refines the target a tracker or low-level policy "
                                f"steers to; execution={settings.execution} has none (use execution=track or lowlevel)")
            if planner.task is None:
                raise UserError("grasp_align needs the planner's task (its grasp rules)")
            planner.task.check_grasp_align()
        self.goal_objects = planner.task.goal_objects if planner.task is not None else 1
        self.chooser = None
        if settings.object_choice != "given":
            if self.goal_objects < 2:
                raise UserError(f"object_choice={settings.object_choice} chooses among several goal objects; "
                                f"{planner.task.name if planner.task else 'a planner without a task'} has one")
            self.chooser = ObjectChoice(planner, planner.task, settings.object_choice, settings.choice_horizon,
                                        self.objective)
        self.revisit_cost, self.revisit_radius = settings.revisit_cost, settings.revisit_radius
        self.blocked_cost, self.blocked_reach = settings.blocked_cost, settings.blocked_reach
        if self.blocked_cost:
            if self.reacher is None and self.tracker is None:
                raise UserError(f"blocked_cost={self.blocked_cost} records the targets a tracker or low-level policy "
                                f"could not reach; execution={settings.execution} has none (use execution=track)")
            if planner.task is None:
                raise UserError("blocked_cost needs the planner's task (its rule for a blocked step)")
            # a task without a rule for blocked steps refuses here, not at the episode's first step
            planner.task.blocked(*(np.zeros((0, d)) for d in (planner.obs_dim, planner.act_dim, planner.obs_dim)))
        self.goal = None if planner.task is None or settings.goal is None else planner.task.check_goal(settings.goal)
        self.adapter = planner.task.observation_adapter(self.goal) if planner.task is not None else NativeObservation()
        self.max_episode_steps = max_episode_steps
        self.low, self.high = action_low, action_high
        self.failures = 0
        self.plans_made = 0
        self.plan_seconds = 0.0
        self.reset(seed)

    @property
    def meta(self) -> dict:
        """What the planner's checkpoint says of itself (path, env, reference scores)."""
        return self.planner.meta

    def settings_record(self) -> dict:
        """The sampler's and the controller's settings, in the form checkpoints store them."""
        return {"sampler": asdict(self.planner.settings.sampler), "controller": asdict(self.settings)}

    def _reacher(self, lowlevel) -> GoalReacher:
        """The low-level policy for execution="lowlevel", checked to read the planner's states."""
        if isinstance(lowlevel, GoalReacher):
            reacher = lowlevel
        elif self.settings.lowlevel is not None:
            reacher = load_lowlevel(self.settings.lowlevel, device=self.planner.device)
        elif self.planner.task is not None:
            reacher = load_lowlevel(self.planner.task.shipped_checkpoint("lowlevel"), device=self.planner.device)
        else:
            raise UserError("execution=lowlevel needs a low-level policy: pass lowlevel=<checkpoint>")
        reacher.check_reads(self.planner.obs_dim, "DF planner")
        return reacher

    def reset(self, seed: int | None = None) -> None:
        """Forget the episode: latent, plan, history. `seed` makes the planner's sampling reproducible."""
        self.t = 0
        self.z = None
        self.plan = None  # numpy actions [N, H, Da] of the current plan
        self.plan_states = None
        self.plan_tokens = None  # normalized tokens of the current plan (warm start of the next one)
        self.plan_step = 0
        self.pending_actions: list[np.ndarray] = []
        self.pending_obs: list[np.ndarray] = []
        self.token_start = None  # observation before the token being executed
        self.window: deque = deque(maxlen=self.memory_tokens or 1)  # (obs before, actions, observations) per token
        self.history: list[np.ndarray] = []  # plans made this episode (states, numpy) for plots
        self.visited: list[np.ndarray] = []  # goal-dim positions, one per token executed (revisit_cost)
        self.blocked: list[tuple[np.ndarray, np.ndarray]] = []  # (goal-dim targets, blocked steps) per token
        self._sent = None  # (states, actions, targets) of the last step, to tell a blocked one (blocked_cost)
        self._blocked_now = None  # the token being executed: (last blocked target, blocked steps) per env
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator(device=self.planner.device).manual_seed(int(seed))
        self.adapter.reset()
        if self.chooser is not None:
            self.chooser.reset()

    def act(self, obs, goal=None) -> np.ndarray:
        """A Gymnasium dict observation (single or batched) -> action [Da] or [N, Da], always finite and inside
        [action_low, action_high]. The env's own observation works too (the task's `observation_adapter`: a plain
        Fetch dict; an OGBench array with `goal=info["goal"]`). Rows with NaN/inf inputs get a zero action (counted
        in `failures`); wrong shapes and a batch size that changed without `reset()` raise a UserError."""
        states, goals, batched = split_observation(self.adapter(obs, goal))
        if goals is None:
            raise UserError("MPCController needs the goal: pass the env's dict observation (with 'desired_goal')")
        p = self.planner
        if states.shape[1] != p.obs_dim or goals.shape[1] != len(p.goal_dims):
            raise UserError(f"act() needs observations [N, {p.obs_dim}] and goals [N, {len(p.goal_dims)}], got "
                            f"{states.shape} and {goals.shape}")
        if self.plan is not None and len(states) != len(self.plan):
            raise UserError(f"act() got {len(states)} observations but the episode started with {len(self.plan)}; "
                            f"call reset() before changing the batch size")
        finite = np.isfinite(states).all(-1) & np.isfinite(goals).all(-1)
        states, goals = np.where(finite[:, None], states, 0.0), np.where(finite[:, None], goals, 0.0)
        if self.chooser is not None:
            seconds = self.chooser.seconds
            states, goals = self.chooser(states, goals, self.generator)
            self.plan_seconds += self.chooser.seconds - seconds
        self._remember(states)
        if self.blocked_cost and self._sent is not None:
            self._note_blocked(states, finite)
        token_start = self.t % self.fs == 0
        replan = self.plan is None or self.plan_step >= self.replan_every or self.plan_step >= self.plan.shape[1]
        if self.revisit_cost and token_start:
            self.visited.append(states[:, list(self.planner.goal_dims)])
        if (token_start or replan) and self._blocked_now is not None and self._blocked_now[1].any():
            self.blocked.append(self._blocked_now)  # the next plan already avoids the last blocked target
            self._blocked_now = None
        if replan:
            self._replan(states, goals)
        action, target = self._action(states, goals)
        self.plan_step += 1
        self.t += 1
        action[~finite] = 0.0  # never act on an observation we could not read: hold still instead
        action, bad = safe_actions(action, self.low, self.high)
        self.failures += bad + int((~finite).sum())
        if self.blocked_cost:
            self._sent = (states, action, target)
        self.pending_actions.append(action)
        return action if batched else action[0]

    # --- internals -----------------------------------------------------------------------------
    def _action(self, states: np.ndarray, goals: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(action, target): the plan's own action now (target None), or the tracking controller's or the low-level
        policy's toward the target, the planned state `subgoal_ahead` steps ahead (the plan's last state once fewer
        remain) snapped to the goal near it."""
        if self.plan_states is None or (self.reacher is None and self.tracker is None):
            return self.plan[:, self.plan_step].copy(), None  # own actions (without planned states: a failed plan's)
        ahead = min(self.plan_step + self.subgoal_ahead, self.plan_states.shape[1] - 1)
        target = snap_to_goal(self.plan_states[:, ahead], goals, self.planner.goal_dims, self.goal_objects,
                              self.snap_radius, current=states)
        if self.grasp_align is not None:
            target = self.planner.task.align_grasp(states, target, self.grasp_align)
        if self.tracker is not None:
            return self.tracker(states, target, self.plan[:, self.plan_step]), target
        return self.reacher.act_toward(states, target), target

    def _note_blocked(self, states: np.ndarray, finite: np.ndarray) -> None:
        """Count the last step toward its target as blocked where the task says the point did not get there."""
        before, actions, targets = self._sent
        if targets is None:  # the step executed a failed plan's actions: no target
            return
        hit = self.planner.task.blocked(before, actions, states) & finite
        dims = list(self.planner.goal_dims)
        if self._blocked_now is None:
            self._blocked_now = (states[:, dims].copy(), np.zeros(len(states)))
        where, steps = self._blocked_now
        place = targets[hit][:, dims]
        if self.blocked_reach is not None:  # the point of the way there at most blocked_reach from the point
            start = before[hit][:, dims]
            far = np.linalg.norm(place - start, axis=-1, keepdims=True)
            place = start + (place - start) * np.minimum(1.0, self.blocked_reach / np.maximum(far, 1e-9))
        where[hit] = place
        steps[hit] += 1

    def _remember(self, states: np.ndarray) -> None:
        """Record the observation that followed the last action; feed whole tokens into the latent."""
        if not self.memory:
            self.pending_actions.clear()
            return
        if self.token_start is None:  # the episode's first observation
            self.token_start = states
            if self.memory_tokens is None:
                self.z = self.planner.initial_latent(torch.as_tensor(states))
            return
        self.pending_obs.append(states)
        if len(self.pending_actions) == self.fs:
            acts = torch.as_tensor(np.stack(self.pending_actions, 1))
            nxt = torch.as_tensor(np.stack(self.pending_obs, 1))
            if self.memory_tokens is None:
                self.z = self.planner.advance_latent(self.z, acts, nxt, generator=self.generator)
            elif self.memory_tokens > 0:
                self.window.append((self.token_start, acts, nxt))
            self.token_start = states
            self.pending_actions.clear()
            self.pending_obs.clear()

    def _latent(self, obs_t: torch.Tensor) -> torch.Tensor:
        """The latent to plan from: the running one, one rebuilt from the recent window, or a fresh one."""
        if not self.memory:
            return self.planner.initial_latent(obs_t)
        if self.memory_tokens is None:
            return self.z
        if not self.window or self.memory_tokens == 0:
            return self.planner.initial_latent(obs_t)
        z = self.planner.initial_latent(torch.as_tensor(self.window[0][0]))
        acts = torch.cat([w[1] for w in self.window], dim=1)
        nxt = torch.cat([w[2] for w in self.window], dim=1)
        return self.planner.advance_latent(z, acts, nxt, generator=self.generator)

    def _horizon_now(self) -> int:
        if self.max_episode_steps is None:
            return self.horizon
        remaining = max(self.max_episode_steps - self.t, 1)
        return int(min(self.horizon, max(math.ceil(remaining / self.fs), math.ceil(self.replan_every / self.fs))))

    def _plan_by_distance(self, z, z_now, obs_t, goal_t, horizon: int) -> None:
        """Variable horizon: one plan per group of envs that need the same number of tokens (the task objective's
        distance at the current state, without the revisit penalty); the plans are cut to the shortest (only the first
        `replan_every` steps are executed before the next replan)."""
        horizons = tokens_to_goal(self.objective(goal_t), obs_t, self.planner.act_dim, self.token_reach,
                                  min(self.min_horizon, horizon), horizon)  # near the episode's end: the time left
        actions, states = [], []
        for h in np.unique(horizons):
            rows = torch.as_tensor(np.flatnonzero(horizons == h), device=obs_t.device)
            plan = self.planner.plan_from(z[rows], obs_t[rows], goal_t[rows], int(h), self._guidance(goal_t, rows),
                                          generator=self.generator, z_now=None if z_now is None else z_now[rows])
            self.plan_seconds += plan.info["seconds"]
            actions.append((rows, plan.actions))
            states.append((rows, plan.states))
        steps = int(horizons.min()) * self.fs
        self.plan = _merge(actions, steps, len(obs_t)).cpu().numpy()
        self.plan_states = _merge(states, steps + 1, len(obs_t)).cpu().numpy()
        self.plan_tokens = None  # plans of several lengths: nothing to warm-start from (checked in __init__)

    def _guidance(self, goal_t: torch.Tensor, rows: torch.Tensor | None = None) -> Objective | None:
        """The objective a plan of the envs `rows` (None = all) is guided by: the task's toward the goal, less the
        revisit penalty on the places the episode has been and the targets the point was blocked on (none at the goal
        itself), which tree search's children all keep."""
        if self.objective is None:
            return None
        goal_t = goal_t if rows is None else goal_t[rows]
        toward = self.objective(goal_t)
        visits = self.visited  # recorded only with a revisit cost
        if not visits and not self.blocked:
            return toward
        places = [*visits, *(where for where, _ in self.blocked)]
        places = torch.as_tensor(np.stack(places, 1), dtype=goal_t.dtype, device=goal_t.device)
        weight = self.revisit_cost * self.fs  # per visit: a token's env steps
        if self.blocked:  # one weight per place: the visits', then each blocked target's steps
            weight = np.concatenate([np.full((len(places), len(visits)), weight),
                                     self.blocked_cost * np.stack([steps for _, steps in self.blocked], 1)], 1)
            weight = torch.as_tensor(weight, dtype=goal_t.dtype, device=goal_t.device)
            weight = weight if rows is None else weight[rows]
        away = revisit_penalty(places if rows is None else places[rows], weight, self.revisit_radius, goal_t,
                               self.planner.goal_dims)
        return Penalized(toward, away)

    def _replan(self, states: np.ndarray, goals: np.ndarray) -> None:
        obs_t = torch.as_tensor(states, device=self.planner.device)
        goal_t = torch.as_tensor(goals, device=self.planner.device)
        horizon = self._horizon_now()
        init = None
        if self.plan_tokens is not None and self.plan_step % self.fs == 0:  # the previous plan's unexecuted tokens
            init = self.plan_tokens[:, self.plan_step // self.fs:]
        try:
            z = self._latent(obs_t)
            z_now = None
            if self.memory and self.planner.sampler.history_guidance != 1.0:
                z_now = self.planner.initial_latent(obs_t)
            if self.min_horizon is None or self.objective is None:
                plan = self.planner.plan_from(z, obs_t, goal_t, horizon, self._guidance(goal_t),
                                              generator=self.generator, init=init, z_now=z_now)
                self.plan_seconds += plan.info["seconds"]
                self.plan = plan.actions.cpu().numpy()
                self.plan_states = plan.states.cpu().numpy()
                self.plan_tokens = plan.info["tokens"]
            else:
                self._plan_by_distance(z, z_now, obs_t, goal_t, horizon)
        except UserError:
            raise
        except (RuntimeError, ValueError) as err:  # a numerical failure must not crash the control loop: it is
            # counted in `failures` (evaluation reports them) and logged, and the envs hold still until the next plan
            self.failures += len(states)
            self.last_error = err
            log.warning("DF planning failed (%s: %s): %d envs hold still until the next replan",
                        type(err).__name__, err, len(states))
            self.plan = np.zeros((len(states), self.replan_every, self.planner.act_dim), dtype=np.float32)
            self.plan_states = self.plan_tokens = None
        self.plans_made += 1
        self.plan_step = 0
        if self.plan_states is not None:
            self.history.append(self.plan_states)


def tokens_to_goal(objective: Objective, obs: torch.Tensor, act_dim: int, token_reach: float, shortest: int,
                   longest: int) -> np.ndarray:
    """Tokens each env's plan needs: its cost-to-go (minus the distance objective at the current state) over
    `token_reach`, rounded up, within [shortest, longest]. Non-finite costs get the longest horizon."""
    with torch.no_grad():
        here = obs[:, None].expand(-1, 2, -1)  # a one-step "plan" that stays where it is
        cost = -objective(here, torch.zeros(len(obs), 1, act_dim, device=obs.device)).cpu().numpy()
    tokens = np.where(np.isfinite(cost), np.ceil(np.nan_to_num(cost) / token_reach), longest)
    return np.clip(tokens, shortest, longest).astype(int)


def _merge(parts: list[tuple[torch.Tensor, torch.Tensor]], steps: int, rows: int) -> torch.Tensor:
    """Rows of several plans [n_i, T_i, D], cut to `steps`, back into one batch in the envs' order."""
    first = parts[0][1]
    out = first.new_empty((rows, steps, first.shape[-1]))
    for idx, part in parts:
        out[idx.to(out.device)] = part[:, :steps]
    return out
