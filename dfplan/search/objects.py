"""Which object to move first: the planner's choice when it is given every object's goal at once (MCTD's cube
meta-action, "which cube to guide", searched at the top of the plan; `object_choice`, `dfplan.settings`).

Given the whole goal (OGBench cubes with `goal=whole`: every cube's target), the model — trained on play data in
which one object moves at a time — is shown one object's goal at a time. Whenever no object is being moved, the
controller plans `choice_horizon` tokens for each object not yet at its goal, presenting that object's goal alone,
scores each plan with the task's value against the *whole* goal (`Task.plan_value`: 0 for a physically implausible
plan, else how soon every object is placed, with partial credit), and follows the best object until it is at its goal
and let go (`Task.object_done`). `object_choice=random` picks uniformly among the open objects instead (the
ablation that tells what the search adds). The task supplies the rest: `objects_placed`, `present_object`.
"""

from __future__ import annotations

import time

import numpy as np
import torch


class ObjectChoice:
    """Per env, the object being moved; `__call__(states, goals)` returns the states and goals that present it alone.

    planner: a `DFPlanner`; task: its task (`goal_objects` > 1); mode: "search" | "random"; horizon: tokens of each
    compared plan; objective: goal [B, Dg] -> the guidance objective of the compared plans (None: unguided)."""

    def __init__(self, planner, task, mode: str, horizon: int, objective=None):
        self.planner, self.task, self.mode, self.horizon, self.objective = planner, task, mode, horizon, objective
        self.chosen: np.ndarray | None = None  # [N] the object each env moves, -1 for none
        self.seconds = 0.0  # planning time spent choosing
        self.plans = 0  # plans made to choose

    def reset(self) -> None:
        self.chosen = None

    def __call__(self, states: np.ndarray, goals: np.ndarray, generator: torch.Generator | None = None):
        if self.chosen is None or len(self.chosen) != len(states):
            self.chosen = np.full(len(states), -1)
        placed = self.task.objects_placed(states, goals)  # [N, n]
        moving = self.chosen >= 0
        done = moving & self.task.object_done(states, goals, np.maximum(self.chosen, 0))
        self.chosen[done] = -1
        need = (self.chosen < 0) & ~placed.all(1)
        if need.any():
            self.chosen[need] = self._choose(states[need], goals[need], ~placed[need], generator)
        shown_states, shown_goals = self.task.present_object(states, goals, self.chosen)
        # rows whose observation already presents the chosen object alone (our one-cube subgoal layer's) pass
        # through untouched, not even the rounding of their offsets changed
        as_given = np.isclose(shown_goals, goals, rtol=0.0, atol=1e-5).all(1)
        shown_states[as_given], shown_goals[as_given] = states[as_given], goals[as_given]
        return shown_states, shown_goals

    def _choose(self, states, goals, open_, generator) -> np.ndarray:
        """The object each of these envs moves next, among its open ones (open_ [M, n])."""
        choice = open_.argmax(1)  # an env with one open object takes it
        several = np.flatnonzero(open_.sum(1) > 1)
        if len(several) == 0:
            return choice
        if self.mode == "random":
            for i in several:
                options = np.flatnonzero(open_[i])
                choice[i] = options[int(torch.randint(len(options), (1,), generator=generator))]
            return choice
        rows, objs = np.nonzero(open_[several])
        rows = several[rows]
        t0 = time.perf_counter()
        cand_states, cand_goals = self.task.present_object(states[rows], goals[rows], objs)
        device = self.planner.device
        goal_t = torch.as_tensor(cand_goals, device=device)
        objective = self.objective(goal_t) if self.objective is not None else None
        plan = self.planner.plan(torch.as_tensor(cand_states, device=device), goal_t, horizon=self.horizon,
                                 objective=objective, generator=generator)
        with torch.no_grad():
            values = self.task.plan_value(plan.states, torch.as_tensor(goals[rows], device=device,
                                                                       dtype=plan.states.dtype)).cpu().numpy()
        self.seconds += time.perf_counter() - t0
        self.plans += len(rows)
        best = np.full(len(states), -np.inf)
        for r, o, v in zip(rows, objs, values):  # the first open object wins a tie
            if v > best[r]:
                best[r], choice[r] = v, o
        return choice
