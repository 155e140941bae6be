"""OGBench cube-single and cube-double as tasks (`dfplan.envs.ogbench` holds the env, recipe and oracle).

The state the models see is OGBench's observation plus per-cube subgoal offsets (31-D single, 43-D double): the
subgoal is the target of the cube being moved now and the current position of the others (`SubgoalObservation`,
the same subgoal layer for every planner); `desired_goal` is that subgoal, so guidance steers the predicted cube
positions to it.
Score: success rate in percent, success = every cube within 0.04 m of its target (`info["success"]`) at some step:
OGBench ends the episode there (`terminate_at_goal`, its default) and its evaluation reports that step's flag.
Whether the cubes are still there at the last of the 200 / 500 steps is reported beside it (`success_at_end`).
Env seed `s` plays evaluation task `1 + s % 5`, so 5k consecutive seeds cover every task k times.
`goal=whole` (or `CubeTask(name, subgoals="all")`) appends every cube's target at once instead: no subgoal layer of
ours, the papers' protocol; a DF controller with `object_choice=search` then chooses which cube to move itself
(`dfplan.search.objects`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dfplan.envs import ogbench as cube_env
from dfplan.errors import UserError, check_float, check_int
from dfplan.evaluation.plots import animate_manipulation, plot_manipulation_episodes, plot_manipulation_plans
from dfplan.guidance import REACH_WEIGHT, goal_distance
from dfplan.tasks.base import SOLVED_VALUE, MetaAction, Task, success_by_task

FAMILY = "ogbench"
ORDER = 2  # where its tasks stand in listings (`dfplan.tasks.FAMILIES`)
CUBE_SEARCH_SCALES = (1.0, 2.0, 4.0)  # MCTD's cube meta-actions: one cube guided at these multiples of the scale
# Plausibility of a planned cube motion, judged every VALUE_STRIDE env steps (a plan's positions jitter by ~0.1 from
# step to step), in scaled units (the play data: a carried cube moves <= 0.35 per step, within 0.3 of the effector;
# two cubes move at once in 0.2 % of its steps)
VALUE_STRIDE = 8
CUBE_MOVING = 0.5  # a cube that moves further than this in a stride is moving
CUBE_JUMP = 4.0  # ... and one that moves further than this jumps
GRASP_REACH = 1.0  # a moving cube is within this of the effector (held or pushed); further, it moves by itself


class OGBenchData:
    """`Task.generate_dataset` for the OGBench tasks: a recipe around OGBench's own oracle, or an OGBench `.npz` file
    imported (`npz=`). A task names its generator (`_generator`: the function and its default episode count), the
    default action noise of its oracle and an example file name."""

    default_noise: float
    npz_example: str  # e.g. "cube-single-play-v0.npz"

    def _generator(self):
        raise NotImplementedError

    def generate_dataset(self, dataset_id, seed, overwrite, progress, episodes=None, noise=None, workers=None,
                         npz=None):
        generate, default_episodes = self._generator()
        if npz is not None and not Path(str(npz)).is_file():
            raise UserError(f"npz={npz}: no such file; give the path of an OGBench dataset file "
                            f"(e.g. ~/.ogbench/data/{self.npz_example})")
        try:
            return generate(self.name, episodes=check_int("episodes", episodes or default_episodes, 1),
                            seed=check_int("seed", seed, 0), dataset_id=dataset_id, overwrite=overwrite,
                            noise=check_float("noise", self.default_noise if noise is None else noise, 0.0),
                            workers=None if workers is None else check_int("workers", workers, 1),
                            npz=None if npz is None else str(npz), progress=progress)
        except (ValueError, OSError) as err:
            if npz is None:
                raise
            raise UserError(f"npz={npz}: {err}") from err


class CubeTask(OGBenchData, Task):
    family = FAMILY
    goal_modes = ("fixed", "whole")  # OGBench's five evaluation tasks (chosen by the env seed), their targets given
    #   one cube at a time by our subgoal layer (fixed) or every cube's at once (whole: the papers' protocol)
    default_goal = "fixed"
    success_rule = "any"  # OGBench's: the episode ends once every cube is placed
    score_name = "success %"
    objectives = ("cube_to_subgoal", "reach_then_place")
    variants = ("default",)
    data_options = ("episodes", "noise", "workers", "npz")
    default_noise = 0.1  # OGBench's play data

    def __init__(self, name: str, subgoals: str = "one_cube"):
        self.name, self.subgoals = name, subgoals
        self.num_cubes = self.goal_objects = cube_env.NUM_CUBES[name]
        self.success_radius = cube_env.SUCCESS_DISTANCE  # scaled units (0.04 m)

    @property
    def max_episode_steps(self) -> int:
        return 200 if self.num_cubes == 1 else 500

    @property
    def goal_dims(self) -> tuple[int, ...]:
        return cube_env.cube_dims(self.num_cubes)

    @property
    def plan_dims(self) -> tuple[int, ...]:
        """Effector xyz and yaw (cos, sin), gripper opening, and every cube's position."""
        return (*cube_env.EFFECTOR_POSE, cube_env.GRIPPER, *self.goal_dims)

    @property
    def goal_input_dims(self) -> tuple[int, ...]:
        """The subgoal offsets appended to OGBench's observation (3 per cube, the last dims)."""
        first = cube_env.PROPRIO_DIMS + cube_env.CUBE_DIMS * self.num_cubes
        return tuple(range(first, first + 3 * self.num_cubes))

    def observation_adapter(self, goal: str | None = None):
        """Reads a plain OGBench env's raw observation and `info["goal"]` (`dfplan.envs.ogbench.PlainObservation`)."""
        return cube_env.PlainObservation(self.num_cubes, self._subgoals(goal))

    def make_env(self, goal=None, max_episode_steps=None, render_mode=None):
        return cube_env.make_ogbench_env(self.name, max_episode_steps=max_episode_steps, render_mode=render_mode,
                                         subgoals=self._subgoals(goal))

    def _subgoals(self, goal: str | None) -> str:
        """The subgoal layer's mode for goal mode `goal`: whole = every cube's target at once."""
        return "all" if self.check_goal(goal) == "whole" else self.subgoals

    # --- data --------------------------------------------------------------------------------------
    def default_dataset_id(self, episodes=None, npz=None, **_) -> str:
        return cube_env.default_dataset_id(self.name, episodes, npz)

    @property
    def npz_example(self) -> str:
        return f"{self.name.removeprefix('ogbench-')}-play-v0.npz"

    def _generator(self):
        return cube_env.generate_ogbench_dataset, cube_env.DEFAULT_EPISODES

    def train_command(self, variant: str) -> str:
        return f"dfplan-train env={self.name} +experiment=ogbench"

    def dataset_mismatch(self, dataset) -> str | None:
        env_id = getattr(dataset.spec.env_spec, "id", None) or ""
        return None if cube_env.OGBENCH_TASKS[self.name] in env_id else f"it was recorded in {env_id}"

    # --- guidance ----------------------------------------------------------------------------------
    def _objective(self, name):
        dims = self.goal_dims
        if name == "cube_to_subgoal":
            return lambda goal: goal_distance(goal, dims)
        return lambda goal: reach_then_place(goal, dims, self.num_cubes, self.success_radius)

    # --- tree search (dfplan.search) ------------------------------------------------------------------
    def meta_actions(self) -> list[MetaAction]:
        """MCTD's cube meta-actions: guide one cube to its goal at a multiple of the planner's scale, the other
        cubes unguided (which cube to move first is what the search decides)."""
        return [one_cube_guidance(self.goal_dims, c, scale)
                for c in range(self.num_cubes) for scale in CUBE_SEARCH_SCALES]

    # --- which cube first (dfplan.search.objects, object_choice) -------------------------------------------
    def objects_placed(self, states, goals):
        cubes = cube_env.cube_positions(states, self.num_cubes)
        targets = np.asarray(goals).reshape(len(goals), self.num_cubes, 3)
        return np.linalg.norm(cubes - targets, axis=-1) <= cube_env.SUCCESS_DISTANCE

    def object_done(self, states, goals, objects):
        """The cube is at its target and the effector has let go of it (the play data's tasks end after the
        release: moving on while the cube is held sends the arm off with it)."""
        rows = np.arange(len(objects))
        cube = cube_env.cube_positions(states, self.num_cubes)[rows, objects]
        effector = np.asarray(states)[:, list(cube_env.EFFECTOR)]
        released = np.linalg.norm(effector - cube, axis=-1) >= cube_env.RELEASE_DISTANCE
        return self.objects_placed(states, goals)[rows, objects] & released

    def object_moves(self, states, goals, open_):
        """Each open cube to its target if no other cube sits there; when every open cube's target is taken (the
        swap task), the cubes in the way to a free spot (`dfplan.envs.ogbench.cube_moves`)."""
        cubes = cube_env.cube_positions(states, self.num_cubes)
        targets = np.asarray(goals).reshape(len(goals), self.num_cubes, 3)
        rows, objects, aims = [], [], []
        for i in range(len(goals)):
            for cube, target in cube_env.cube_moves(cubes[i], targets[i], open_[i]):
                aim = targets[i].copy()
                aim[cube] = target
                rows.append(i), objects.append(cube), aims.append(aim.reshape(-1))
        return np.array(rows, dtype=int), np.array(objects, dtype=int), np.array(aims).reshape(len(rows), -1)

    def present_object(self, states, goals, objects):
        return cube_env.present_cube(states, goals, objects)

    def plan_value(self, states, goal, frame_stack=1):
        """MCTD's cube value (`cube_plan_value`): 0 for an implausible plan (every step tested), else how soon every
        cube is placed (or the share of cubes placed by the plan's end, with partial credit for the way closed)."""
        return cube_plan_value(states, goal, self.num_cubes, self.success_radius)

    # --- scoring and pictures ------------------------------------------------------------------------
    def summarize(self, episodes, ref_scores=None) -> dict:
        at_end = [100.0 * e.success_at_end for e in episodes]
        return {**super().summarize(episodes, ref_scores),
                **success_by_task(episodes, cube_env.task_id_of, cube_env.NUM_TASKS),
                "success_at_end": float(np.mean(at_end)) if at_end else None}

    def describe(self, s: dict) -> str:
        per_task = " ".join(f"t{k}:{s[f'task{k}_success']:.0f}" for k in range(1, 6) if f"task{k}_success" in s)
        return (f"{self.name}, {s['episodes']} episodes: success {s['score_mean']:.1f} ± {s['score_se']:.1f} % "
                f"(every cube within 0.04 m of its target; per task {per_task}; still placed at the last step "
                f"{s['success_at_end']:.0f} %), "
                f"{s['episodes_per_minute']:.0f} episodes/min")

    def plot_episodes(self, episodes, path, title="", ref_scores=None) -> Path:
        return plot_manipulation_episodes(episodes, path, title=title, grip_dims=cube_env.EFFECTOR,
                                          radius=self.success_radius / cube_env.XYZ_SCALE, to_metres=cube_env.to_metres)

    def plot_plans(self, states, goals, path, title="") -> Path:
        return plot_manipulation_plans(states, goals[:, :3], path, title=title, grip_dims=cube_env.EFFECTOR,
                                       object_dims=self.goal_dims[:3], to_metres=cube_env.to_metres)

    def animate(self, states, path, goals, plans, steps, title=""):
        """The effector's and every cube's paths in metres, top and side views, with the plan being followed."""
        n, m = self.num_cubes, cube_env.to_metres

        def parts(s):
            return m(s[:, list(cube_env.EFFECTOR)]), m(s[:, list(self.goal_dims)].reshape(len(s), n, 3))

        plans = [None if p is None else parts(p) for p in plans]
        grip, cubes = parts(states)
        return animate_manipulation(grip, cubes, m(goals.reshape(len(goals), n, 3)), plans, steps, title=title,
                                    radius=self.success_radius / cube_env.XYZ_SCALE)

    def track_action(self, states, targets, planned_actions):
        """Move the effector to the planned effector pose and opening (`dfplan.envs.ogbench.track_action`)."""
        return cube_env.track_action(states, targets)

    def align_grasp(self, states, targets, radius):
        """Face the sides of the cube the open gripper approaches; reopen a gripper closed on nothing
        (`dfplan.envs.ogbench.align_grasp`)."""
        return cube_env.align_grasp(states, targets, self.num_cubes, radius)

    def expert(self, lookahead: bool = False):
        return cube_env.CubeOracleController(self.name)


def reach_then_place(goal, cube_dims, num_cubes: int, radius: float, reach_weight: float = REACH_WEIGHT):
    """J = -sum_t sum_c [ ||cube_c,t - subgoal_c|| + w * moving_c * ||effector_t - cube_c,t|| ], where moving_c says
    cube c is away from its subgoal in the plan's first state: pull the gripper to the cube that has to move (once it
    holds the cube that term is ~0) and the cubes to their subgoals."""
    def objective(states, actions):
        B = states.shape[0]
        cubes = states[..., list(cube_dims)].reshape(B, states.shape[1], num_cubes, 3)
        target = goal.reshape(B, 1, num_cubes, 3)
        moving = ((cubes[:, 0] - target[:, 0]).norm(dim=-1) > radius).to(states.dtype)  # [B, n]
        place = (cubes[:, 1:] - target).norm(dim=-1)  # [B, T, n]
        reach = (states[:, 1:, None, list(cube_env.EFFECTOR)] - cubes[:, 1:]).norm(dim=-1)
        return -(place + reach_weight * moving[:, None] * reach).sum(dim=(1, 2))

    return objective


def one_cube_guidance(cube_dims: tuple[int, ...], cube: int, scale: float) -> MetaAction:
    """The meta-action that guides only `cube` to its goal: scale x -sum_t ||cube_t - goal_cube||."""
    dims = slice(3 * cube, 3 * cube + 3)

    def guide(objective, goal):
        return lambda states, actions: scale * goal_distance(goal[:, dims], cube_dims[dims])(states, actions)

    return MetaAction(f"cube{cube}x{scale:g}", guide)


def cube_plan_value(states: torch.Tensor, goal: torch.Tensor, num_cubes: int, radius: float) -> torch.Tensor:
    """MCTD's value of planned states [B, H+1, Ds] (states[:, 0]: now) for the cubes' goals [B, 3n], in [0, 1].

    0 when the plan is physically implausible, judged every VALUE_STRIDE steps: a cube jumps (moves > CUBE_JUMP),
    moves while the effector is further than GRASP_REACH from it at both ends of the stride, or moves together with
    another cube. Else SOLVED_VALUE + (1 - SOLVED_VALUE) (H - t) / H when every cube is first within `radius` of its
    goal at step t, and otherwise SOLVED_VALUE x the mean over cubes of 1 for a cube placed at the plan's end, else
    the fraction of its distance to the goal the plan closes (MCTD's partial credit per placed cube).
    """
    B, T = states.shape[:2]
    H = max(T - 1, 1)
    cubes = states[..., list(cube_env.cube_dims(num_cubes))].reshape(B, T, num_cubes, 3)
    effector = states[..., list(cube_env.EFFECTOR)]
    ends = list(range(0, T, VALUE_STRIDE)) + ([T - 1] if (T - 1) % VALUE_STRIDE else [])
    at, eff_at = cubes[:, ends], effector[:, ends, None]
    step = (at[:, 1:] - at[:, :-1]).norm(dim=-1)  # [B, strides, n]
    moving = step > CUBE_MOVING
    reach = (eff_at - at).norm(dim=-1) <= GRASP_REACH
    near = reach[:, 1:] | reach[:, :-1]
    implausible = ((step > CUBE_JUMP).any(2) | (moving & ~near).any(2) | (moving.sum(2) > 1)).any(1)
    dist = (cubes - goal.reshape(B, 1, num_cubes, 3)).norm(dim=-1)  # [B, T, n]
    placed = (dist <= radius).all(2)  # [B, T]
    first = placed.to(torch.int8).argmax(1)
    credit = torch.where(dist[:, -1] <= radius, torch.ones_like(dist[:, -1]),
                         (1 - dist[:, -1] / dist[:, 0].clamp(min=1e-6)).clamp(0.0, 1.0)).mean(1)
    value = torch.where(placed.any(1), SOLVED_VALUE + (1 - SOLVED_VALUE) * (H - first) / H, SOLVED_VALUE * credit)
    return torch.where(implausible, torch.zeros_like(value), value)


def named_tasks() -> dict:
    return {name: (lambda name=name: CubeTask(name)) for name in cube_env.OGBENCH_TASKS}


def from_spec(spec: dict) -> CubeTask:
    return CubeTask(spec["name"])
