"""MPCController: replans online with the DF planner and executes the model's own actions.

Memory: between replans the RNN latent is advanced with the tokens actually executed and observed (a causal
rollout over real history), so each plan is conditioned on the past, not only on the current state.
`memory=False` re-initializes the latent from the current observation at each replan (the paper's setting).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable

import numpy as np
import torch

from dfplan.guidance import Objective
from dfplan.planners.df import DFPlanner
from dfplan.types import split_observation


class MPCController:
    def __init__(self, planner: DFPlanner, horizon: int = 32, replan_every: int | None = None, memory: bool = True,
                 max_episode_steps: int | None = None, action_low: float = -1.0, action_high: float = 1.0,
                 seed: int | None = None, objective: Callable[[torch.Tensor], Objective] | None = None,
                 memory_tokens: int | None = None):
        """
        horizon: planning horizon in tokens (shrinks to the episode's remaining time when `max_episode_steps` is set).
        replan_every: env steps between plans; default one token (`planner.frame_stack` steps).
        memory: carry the RNN latent across replans (needs `replan_every` to be a multiple of `frame_stack`).
        memory_tokens: with memory, build the latent from only the last this-many executed tokens (re-encoded at
            each replan from the observation before them), so it never holds more history than the model was
            trained on; None = the whole episode.
        objective: goal [B, 2] -> guidance objective (e.g. `GeodesicGuide(layout)`); default the planner's
            goal distance.
        """
        self.objective = objective
        self.planner = planner
        self.fs = planner.frame_stack
        self.horizon = int(horizon)
        self.replan_every = int(replan_every or self.fs)
        if self.horizon < 1 or self.replan_every < 1:
            raise ValueError(f"horizon and replan_every must be >= 1, got {horizon} and {replan_every}")
        if self.replan_every > self.horizon * self.fs:
            raise ValueError(f"replan_every={self.replan_every} exceeds the plan length {self.horizon * self.fs} steps")
        if memory and self.replan_every % self.fs:
            raise ValueError(f"memory=True needs replan_every to be a multiple of frame_stack={self.fs}")
        self.memory = memory
        if memory_tokens is not None and memory_tokens < 0:
            raise ValueError(f"memory_tokens must be >= 0 or None, got {memory_tokens}")
        self.memory_tokens = memory_tokens
        self.max_episode_steps = max_episode_steps
        self.low, self.high = action_low, action_high
        self.failures = 0
        self.plans_made = 0
        self.reset(seed)

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
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator(device=self.planner.device).manual_seed(int(seed))

    def act(self, obs) -> np.ndarray:
        states, goals, batched = split_observation(obs)
        if goals is None:
            raise ValueError("MPCController needs the goal: pass the env's dict observation (with 'desired_goal')")
        finite = np.isfinite(states).all(-1) & np.isfinite(goals).all(-1)
        states, goals = np.where(finite[:, None], states, 0.0), np.where(finite[:, None], goals, 0.0)
        self._remember(states)
        if self.plan is None or self.plan_step >= self.replan_every or self.plan_step >= self.plan.shape[1]:
            self._replan(states, goals)
        action = self.plan[:, self.plan_step].copy()
        self.plan_step += 1
        self.t += 1
        bad = ~np.isfinite(action).all(-1) | ~finite
        if bad.any():  # never emit NaN: hold still instead, and count it
            self.failures += int(bad.sum())
            action[bad] = 0.0
        action = np.clip(action, self.low, self.high)
        self.pending_actions.append(action)
        return action if batched else action[0]

    # --- internals -----------------------------------------------------------------------------
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

    def _replan(self, states: np.ndarray, goals: np.ndarray) -> None:
        obs_t = torch.as_tensor(states, device=self.planner.device)
        goal_t = torch.as_tensor(goals, device=self.planner.device)
        horizon = self._horizon_now()
        init = None
        if self.plan_tokens is not None and self.plan_step % self.fs == 0:  # the previous plan's unexecuted tokens
            init = self.plan_tokens[:, self.plan_step // self.fs:]
        try:
            z = self._latent(obs_t)
            objective = self.objective(goal_t) if self.objective is not None else None
            plan = self.planner.plan_from(z, obs_t, goal_t, horizon, objective, generator=self.generator, init=init)
            self.plan = plan.actions.cpu().numpy()
            self.plan_states = plan.states.cpu().numpy()
            self.plan_tokens = plan.info["tokens"]
        except (RuntimeError, ValueError) as err:  # a planning failure must not crash the control loop
            self.failures += len(states)
            self.last_error = err
            self.plan = np.zeros((len(states), self.replan_every, self.planner.act_dim), dtype=np.float32)
            self.plan_states = self.plan_tokens = None
        self.plans_made += 1
        self.plan_step = 0
        if self.plan_states is not None:
            self.history.append(self.plan_states)
