"""The task interface: everything the CLI, evaluation, benchmarks and plots need to know about an environment.

A task says how to make its env (fixed or random goal), how its dataset is made and named, which state dims the
goal refers to, which guidance objectives it offers, when an episode succeeded, how episodes are scored and drawn,
and which checkpoints ship for it. Nothing outside a task module looks at env names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dfplan.errors import UserError, check_choice
from dfplan.evaluation.plots import animate_maze
from dfplan.guidance import Objective, Penalized
from dfplan.shipped import shipped_path
from dfplan.types import EpisodeResult, standard_error

ObjectiveBuilder = Callable  # goal [B, Dg] tensor -> Objective (states [B,H+1,Ds], actions [B,H,Da]) -> [B]
SEARCH_SCALES = (0.0, 0.1, 0.5, 1.0, 2.0)  # MCTD's maze meta-actions: multiples of the planner's guidance scale
SOLVED_VALUE = 0.5  # `Task.plan_value` at or above this: the plan solves the task (tree search stops there)


@dataclass(frozen=True)
class MetaAction:
    """What tells a tree-search node's children apart (`dfplan.search`): `guide(objective, goal)` turns the planner's
    objective for B rows (and their goals [B, Dg]) into the child's, e.g. a multiple of it, or one cube's part."""

    label: str
    guide: Callable

    def child_objective(self, objective: Objective, goal: torch.Tensor) -> Objective:
        """The objective a child made by this meta-action is guided with: `guide` applied to the pull toward the
        goal; a `Penalized` objective's penalty (e.g. the revisit cost) stays whole in every child."""
        if isinstance(objective, Penalized):
            return Penalized(self.guide(objective.toward, goal), objective.penalty)
        return self.guide(objective, goal)


def scaled_guidance(scale: float) -> MetaAction:
    """The planner's objective times `scale` (0: the child is unguided by it; its gradient is zero)."""
    return MetaAction(f"x{scale:g}", lambda objective, goal: (lambda s, a: scale * objective(s, a)))


def reach_value(pos: torch.Tensor, goal: torch.Tensor, radius: float, max_step: float,
                frame_stack: int = 1) -> torch.Tensor:
    """MCTD's value of planned positions pos [B, H+1, k] (pos[:, 0]: now) for goals [B, k], in [0, 1]: 0 when a step
    moves further than `max_step` (implausible: the plan jumps, e.g. across a wall); else 0.5 + 0.5 (H - t) / H
    when the plan first comes within `radius` of the goal at step t (MCTD's (H - t) / H, lifted so that every plan
    that reaches beats every one that does not); else 0.5 x the fraction of the start's distance to the goal that
    the plan's closest state closes (partial progress). `frame_stack` > 1: the plan is tokens of that many steps,
    and only the steps inside a token are tested (a model may join its tokens more loosely than it moves inside one:
    the navigate models' steps between tokens are 3-4 times their steps inside one, in every plan)."""
    H = max(pos.shape[1] - 1, 1)
    steps = (pos[:, 1:] - pos[:, :-1]).norm(dim=-1)  # step i: state i -> i + 1; i % frame_stack == 0 joins two tokens
    if frame_stack > 1:
        steps = steps[:, torch.arange(steps.shape[1], device=steps.device) % frame_stack != 0]
    jump = steps.amax(1) if steps.shape[1] else pos.new_zeros(pos.shape[0])
    dist = (pos - goal[:, None]).norm(dim=-1)  # [B, H+1]
    inside = dist <= radius
    first = inside.to(torch.int8).argmax(1)  # first step within the radius (0 when none: masked below)
    progress = (1 - dist.amin(1) / dist[:, 0].clamp(min=1e-6)).clamp(0.0, 1.0)
    value = torch.where(inside.any(1), SOLVED_VALUE + (1 - SOLVED_VALUE) * (H - first) / H, SOLVED_VALUE * progress)
    return torch.where(jump > max_step, torch.zeros_like(value), value)


class NativeObservation:
    """Turns a plain env's own observation into the dict the task's models read, so a controller works in a user's
    loop on the env as Gymnasium or OGBench makes it: `adapter(obs, goal)`, `reset()` at each episode's start.
    This base class passes our dict observations through; a task whose models read more overrides
    `Task.observation_adapter`."""

    def reset(self) -> None:
        pass

    def __call__(self, obs, goal=None):
        if goal is not None:
            raise UserError("this task's observations carry their goal: call act(obs) without goal=")
        return obs


def success_by_task(episodes: list[EpisodeResult], task_id_of, num_tasks: int) -> dict:
    """Success % and its s.e. per evaluation task (`task<k>_success`, `task<k>_se`), the task read from each
    episode's env seed."""
    out = {}
    for k in range(1, num_tasks + 1):
        wins = [100.0 * e.success for e in episodes if task_id_of(e.seed) == k]
        if wins:
            out[f"task{k}_success"] = float(np.mean(wins))
            out[f"task{k}_se"] = standard_error(wins)
    return out


class Task(ABC):
    """One environment family member, e.g. PointMaze U-Maze or Fetch Push."""

    name: str
    family: str  # the task module's family: "pointmaze", "fetch", ...
    goal_modes: tuple[str, ...] = ("fixed", "random")
    default_goal: str = "fixed"
    success_rule: str = "any"  # "any": success once reached (maze); "end": success at the last step (manipulation)
    score_name: str = "score"  # what `summarize` calls `score_mean`
    success_radius: float = 0.05  # the env's success distance between the achieved and the desired goal
    objectives: tuple[str, ...] = ()  # guidance objectives by name; the first is the default
    variants: tuple[str, ...] = ()  # shipped DF checkpoint variants; the first is the default
    data_options: tuple[str, ...] = ()  # dfplan-data keys this task's recipe takes (besides seed and dataset_id)
    action_bounds: tuple[float, float] = (-1.0, 1.0)  # the env's action box, the same for every action dim
    goal_objects: int = 1  # the goal dims split evenly into this many objects' positions (cubes: one per cube)

    # --- env ---------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def max_episode_steps(self) -> int: ...

    @abstractmethod
    def make_env(self, goal: str | None = None, max_episode_steps: int | None = None, render_mode: str | None = None):
        """A Gymnasium env with dict observations (observation, achieved_goal, desired_goal)."""

    @property
    @abstractmethod
    def goal_dims(self) -> tuple[int, ...]:
        """The state dims the goal (`desired_goal`) refers to: maze xy, the object's position, ..."""

    @property
    def plan_dims(self) -> tuple[int, ...]:
        """The state dims a plan must get right for the low-level policy to reach it (its subgoal dims): what the
        agent controls and what it must move. Default: the whole state."""
        return tuple(range(self.make_env().observation_space["observation"].shape[0]))

    @property
    def goal_input_dims(self) -> tuple[int, ...]:
        """The state dims that tell a model the goal (the cube tasks' subgoal offsets); () when the goal is not part
        of the state. `state_dims=plan_goal` trains a model on `plan_dims` and these."""
        return ()

    def observation_adapter(self, goal: str | None = None) -> NativeObservation:
        """What the controllers use to read the env's own observations (see `NativeObservation`), presented as goal
        mode `goal` presents them (None: the task's default)."""
        return NativeObservation()

    def step_success(self, obs: dict, info: dict) -> bool:
        """Did this step reach the goal? Default: the env's own `info["success"]` / `info["is_success"]`."""
        return bool(info.get("success", info.get("is_success", False)))

    # --- tree search (dfplan.search) ------------------------------------------------------------------
    search_scales: tuple[float, ...] = SEARCH_SCALES  # default meta-actions: these multiples of the guidance scale

    def meta_actions(self) -> list[MetaAction]:
        """The children of a tree-search node differ by these: by default the planner's objective scaled."""
        return [scaled_guidance(s) for s in self.search_scales]

    def plan_value(self, states: torch.Tensor, goal: torch.Tensor, frame_stack: int = 1) -> torch.Tensor:
        """Tree search's value of raw planned states [B, H+1, Ds] (states[:, 0]: now) for goals [B, Dg]: [B] in
        [0, 1], 0 for a physically implausible plan, >= `SOLVED_VALUE` for one that solves the task. `frame_stack`:
        the env steps per token of the model that made the plan (a task may test plausibility inside tokens only)."""
        raise UserError(f"{self.name} has no plan value function: search=mctd does not apply to it")

    # --- which object to move first (dfplan.search.objects, object_choice) ---------------------------------
    def objects_placed(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Raw states [N, Ds] and goals [N, Dg] -> [N, goal_objects] bool: which objects are at their goals."""
        raise UserError(f"{self.name} has one goal object: object_choice does not apply to it")

    def object_done(self, states: np.ndarray, goals: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """[N] bool: is object `objects[i]` of env i at its goal and let go, so that another may be moved?"""
        raise UserError(f"{self.name} has one goal object: object_choice does not apply to it")

    def object_moves(self, states: np.ndarray, goals: np.ndarray, open_: np.ndarray):
        """The moves to choose among, given which objects are not at their goals (`open_` [N, n] bool): (env rows
        [M], objects [M], goals [M, Dg] that each move presents: the env's goals with the moved object's target
        where it is headed). Default: every open object to its goal."""
        rows, objects = np.nonzero(open_)
        return rows, objects, np.asarray(goals)[rows]

    def present_object(self, states: np.ndarray, goals: np.ndarray, objects: np.ndarray):
        """(states, goals) as the models read them when only object `objects[i]` of env i is to move (-1: none):
        that object's goal, the others held where they are."""
        raise UserError(f"{self.name} has one goal object: object_choice does not apply to it")

    def check_goal(self, goal: str | None) -> str:
        goal = self.default_goal if goal is None else goal
        check_choice("goal", goal, self.goal_modes)
        return goal

    # --- data --------------------------------------------------------------------------------------
    @abstractmethod
    def default_dataset_id(self, **options) -> str: ...

    @abstractmethod
    def generate_dataset(self, dataset_id: str, seed: int, overwrite: bool, progress: bool, **options):
        """Write the task's dataset with its recipe (atomically) and return it loaded through Minari."""

    def dataset_mismatch(self, dataset) -> str | None:
        """Why `dataset` (a MinariDataset) was not made for this task, or None when it may have been."""
        return None

    # --- guidance ----------------------------------------------------------------------------------
    def objective(self, name: str | None) -> ObjectiveBuilder:
        """The builder of the named guidance objective: goal [B, Dg] -> objective."""
        name = self.objectives[0] if name is None else name
        check_choice("objective", name, self.objectives)
        return self._objective(name)

    @abstractmethod
    def _objective(self, name: str) -> ObjectiveBuilder: ...

    # --- scoring and pictures ------------------------------------------------------------------------
    def summarize(self, episodes: list[EpisodeResult], ref_scores=None) -> dict:
        """Task-level summary; the generic part (returns, success, time to goal) is added by the evaluation."""
        success = [100.0 * e.success for e in episodes]
        return {"score_name": "success %", "score_mean": float(np.mean(success)), "score_se": standard_error(success)}

    def describe(self, summary: dict) -> str:
        """A one-line human summary of `summarize`'s output plus the generic keys."""
        return (f"{self.name}: success {summary['success_rate']:.0%} over {summary['episodes']} episodes "
                f"(± {summary['score_se']:.1f} points s.e.), {summary['episodes_per_minute']:.0f} episodes/min")

    @abstractmethod
    def plot_episodes(self, episodes: list[EpisodeResult], path: str | Path, title: str = "",
                      ref_scores=None) -> Path: ...

    @abstractmethod
    def plot_plans(self, states: np.ndarray, goals: np.ndarray, path: str | Path, title: str = "") -> Path: ...

    def animate(self, states: np.ndarray, path: np.ndarray, goals: np.ndarray, plans: list, steps, title: str = ""):
        """Frames (RGB arrays) of one recorded episode drawn with matplotlib, no OpenGL (`dfplan-eval video=`):
        `states` [T+1, Ds] observations, `path` [T+1, Dg] achieved goals, `goals` [T+1, Dg] desired goals, `plans[t]`
        the planned states [H+1, Ds] being followed at step t (None: none), one frame per step in `steps`. By default
        the achieved goal's first two dims, top-down."""
        xy = list(self.goal_dims[:2])
        plans = [None if p is None else p[:, xy] for p in plans]
        return animate_maze(None, path[:, :2], goals[:, :2], plans, steps, title=title, radius=self.success_radius)

    def plan_stats(self, states: np.ndarray, goals: np.ndarray) -> dict:
        """Numbers that say whether open-loop plans [B, H+1, Ds] make sense: where they end relative to the goal."""
        end = np.linalg.norm(states[:, -1, list(self.goal_dims)] - goals, axis=-1)
        return {"end_distance": float(end.mean()), "reached": float(np.mean(end <= self.success_radius))}

    def track_action(self, states: np.ndarray, targets: np.ndarray, planned_actions: np.ndarray) -> np.ndarray:
        """The controller that steers from `states` [N, Ds] toward planned `targets` [N, Ds]: how Diffuser's plans are
        executed on this task."""
        raise UserError(f"{self.name} has no tracking controller for planned states; use planner=diffuser-actions")

    def blocked(self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray) -> np.ndarray:
        """Rows [N] (bool) whose step from `states` [N, Ds] under `actions` [N, Da] to `next_states` went much less
        far than the action sent them: something the plan did not show (a wall) stopped them (`blocked_cost`)."""
        raise UserError(f"{self.name} cannot tell a blocked step: blocked_cost does not apply to it")

    def align_grasp(self, states: np.ndarray, targets: np.ndarray, radius: float) -> np.ndarray:
        """Targets [N, Ds] for the low-level policy or tracker refined by the task's grasp rules (`grasp_align`):
        e.g. the effector turned to grasp the object it approaches (within `radius`) the way the task's objects are
        grasped."""
        self.check_grasp_align()  # refuses: a task that has grasp rules overrides this method
        return targets

    def check_grasp_align(self) -> None:
        """Refuse `grasp_align` where the task has no grasp rules (does not override `align_grasp`)."""
        if type(self).align_grasp is Task.align_grasp:
            raise UserError(f"{self.name} has no grasp alignment: grasp_align does not apply to it")

    def rest_state(self, states: np.ndarray) -> np.ndarray:
        """The state [N, Ds] a tracking controller holds once a plan has run out, from the plan's last state:
        by default that state itself."""
        return states

    def expert(self):
        """A scripted controller (reset / act) that knows the task: the benchmarks' ceiling."""
        raise UserError(f"{self.name} has no scripted expert")

    # --- provenance --------------------------------------------------------------------------------
    def spec(self) -> dict:
        """What a checkpoint stores to rebuild this task (`dfplan.tasks.task_from_spec`)."""
        return {"family": self.family, "name": self.name}

    def shipped_checkpoint(self, planner: str = "df", variant: str | None = None) -> Path:
        """The checkpoint shipped in the package for this task: DF (by variant), Diffuser, BC or the low-level
        policy."""
        if planner == "lowlevel":
            return shipped_path(f"{self.name}-lowlevel", train_hint=f"dfplan-train env={self.name} model=lowlevel "
                                                                    f"train=lowlevel_cpu")
        if planner in ("diffuser", "bc"):
            return shipped_path(f"{self.name}-{planner}", train_hint=f"dfplan-train env={self.name} model={planner} "
                                                                    f"train={planner}_cpu")
        if not self.variants:
            raise UserError(f"no DF checkpoint ships for {self.name}; train one with dfplan-train env={self.name}")
        variant = self.variants[0] if variant is None else variant
        check_choice("variant", variant, self.variants)
        return shipped_path(f"{self.name}-{variant}", train_hint=self.train_command(variant))

    def train_command(self, variant: str) -> str:
        """The command that trains this task's DF checkpoint of `variant` (named when one does not ship)."""
        return f"dfplan-train env={self.name}"
