"""Which object to move first: the planner's choice when it is given every object's goal at once (MCTD's cube
meta-action, "which cube to guide", searched at the top of the plan; `object_choice`, `dfplan.settings`).

Given the whole goal (OGBench cubes with `goal=whole`: every cube's target), the model — trained on play data in
which one object moves at a time — is shown one object's goal at a time. Whenever no object is being moved, the
controller plans `choice_horizon` tokens for each object not yet at its goal, presenting that object's goal alone,
scores each plan with the task's value against the *whole* goal (`Task.plan_value`: 0 for a physically implausible
plan, else how soon every object is placed, with partial credit), and follows the best object until it is at its goal
and let go (`Task.object_done`). `object_choice=random` picks uniformly among the same moves instead (the ablation
that tells what the search adds). The task supplies the rest: `objects_placed`, `present_object`, and
`object_moves`, the moves to choose among: on the cube tasks an object whose goal another object sits on is not one
of them, and when every open object's goal is taken (the swap task) the moves are those that clear one, to a free
spot (MCTD's meta-actions have no such move).
"""

from __future__ import annotations

import time

import numpy as np
import torch


class ObjectChoice:
    """Per env, the object being moved and where to; `__call__(states, goals)` returns the states and goals that
    present that move alone.

    planner: a `DFPlanner`; task: its task (`goal_objects` > 1); mode: "search" | "random"; horizon: tokens of each
    compared plan; objective: goal [B, Dg] -> the guidance objective of the compared plans (None: unguided)."""

    def __init__(self, planner, task, mode: str, horizon: int, objective=None):
        self.planner, self.task, self.mode, self.horizon, self.objective = planner, task, mode, horizon, objective
        self.chosen: np.ndarray | None = None  # [N] the object each env moves, -1 for none
        self.aims: np.ndarray | None = None  # [N, Dg] the goals each env's move presents
        self.seconds = 0.0  # planning time spent choosing
        self.plans = 0  # plans made to choose

    def reset(self) -> None:
        self.chosen = self.aims = None

    def __call__(self, states: np.ndarray, goals: np.ndarray, generator: torch.Generator | None = None):
        if self.chosen is None or len(self.chosen) != len(states):
            self.chosen, self.aims = np.full(len(states), -1), np.array(goals, copy=True)
        moving = self.chosen >= 0
        done = moving & self.task.object_done(states, self.aims, np.maximum(self.chosen, 0))
        self.chosen[done] = -1
        placed = self.task.objects_placed(states, goals)  # [N, n]
        need = (self.chosen < 0) & ~placed.all(1)
        self.aims[self.chosen < 0] = goals[self.chosen < 0]
        if need.any():
            rows = np.flatnonzero(need)
            self.chosen[rows], self.aims[rows] = self._choose(states[rows], goals[rows], ~placed[rows], generator)
        shown_states, shown_goals = self.task.present_object(states, self.aims, self.chosen)
        # rows whose observation already presents the chosen object alone (our one-cube subgoal layer's) pass
        # through untouched, not even the rounding of their offsets changed
        as_given = np.isclose(shown_goals, goals, rtol=0.0, atol=1e-5).all(1)
        shown_states[as_given], shown_goals[as_given] = states[as_given], goals[as_given]
        return shown_states, shown_goals

    def _choose(self, states, goals, open_, generator) -> tuple[np.ndarray, np.ndarray]:
        """(the object each of these envs moves next, the goals that move presents [M, Dg]) among the task's moves
        for its open objects (open_ [M, n])."""
        rows, objs, aims = self.task.object_moves(states, goals, open_)  # rows ascending
        if len(rows) == 0:
            return np.full(len(states), -1), goals
        counts = np.bincount(rows, minlength=len(states))
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # each env's first move in `rows`
        if self.mode == "random":
            pick = np.array([int(torch.randint(int(k), (1,), generator=generator)) if k > 1 else 0 for k in counts])
        else:
            pick = np.zeros(len(states), dtype=int)
            several = counts[rows] > 1
            if several.any():
                values = np.full(len(rows), -np.inf)
                values[several] = self._values(states[rows[several]], goals[rows[several]], objs[several],
                                               aims[several], generator)
                for i in np.flatnonzero(counts > 1):  # the first move wins a tie
                    pick[i] = int(np.argmax(values[first[i]:first[i] + counts[i]]))
        take = np.minimum(first + pick, len(rows) - 1)  # an env without moves reads any row, then is masked
        choice = np.where(counts > 0, objs[take], -1)
        return choice, np.where((counts > 0)[:, None], aims[take], goals)

    def _values(self, states, goals, objects, aims, generator) -> np.ndarray:
        """Plan `horizon` tokens for each move (states [K, Ds] presenting `objects` headed for `aims`) and score
        each plan with the task's value against the whole goal `goals` [K, Dg]."""
        t0 = time.perf_counter()
        cand_states, cand_goals = self.task.present_object(states, aims, objects)
        device = self.planner.device
        goal_t = torch.as_tensor(cand_goals, device=device)
        objective = self.objective(goal_t) if self.objective is not None else None
        plan = self.planner.plan(torch.as_tensor(cand_states, device=device), goal_t, horizon=self.horizon,
                                 objective=objective, generator=generator)
        with torch.no_grad():
            goals_t = torch.as_tensor(goals, device=device, dtype=plan.states.dtype)
            values = self.task.plan_value(plan.states, goals_t, frame_stack=self.planner.frame_stack).cpu().numpy()
        self.seconds += time.perf_counter() - t0
        self.plans += len(states)
        return values
