"""OGBench cube-single and cube-double as tasks (`dfplan.envs.ogbench` holds the env, recipe and oracle).

The state the models see is OGBench's observation plus per-cube subgoal offsets (31-D single, 43-D double): the
subgoal is the target of the cube being moved now and the current position of the others (`SubgoalObservation`,
the same subgoal layer for every planner); `desired_goal` is that subgoal, so guidance steers the predicted cube
positions to it.
Score: success rate in percent, success = every cube within 0.04 m of its target at the last step (`info["success"]`).
Env seed `s` plays evaluation task `1 + s % 5`, so 5k consecutive seeds cover every task k times.
`CubeTask(name, subgoals="all")` appends every cube's target at once instead (no subgoal layer; the ablation).
"""

from __future__ import annotations

from pathlib import Path

from dfplan.envs import ogbench as cube_env
from dfplan.errors import UserError, check_float, check_int
from dfplan.evaluation.plots import animate_manipulation, plot_manipulation_episodes, plot_manipulation_plans
from dfplan.guidance import REACH_WEIGHT, goal_distance
from dfplan.tasks.base import Task, success_by_task

FAMILY = "ogbench"
ORDER = 2  # where its tasks stand in listings (`dfplan.tasks.FAMILIES`)


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
    goal_modes = ("fixed",)  # OGBench's five evaluation tasks, chosen by the env seed
    default_goal = "fixed"
    success_rule = "end"
    score_name = "success %"
    objectives = ("cube_to_subgoal", "reach_then_place")
    variants = ("default",)
    data_options = ("episodes", "noise", "workers", "npz")
    default_noise = 0.1  # OGBench's play data

    def __init__(self, name: str, subgoals: str = "one_cube"):
        self.name, self.subgoals = name, subgoals
        self.num_cubes = cube_env.NUM_CUBES[name]
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

    def observation_adapter(self):
        """Reads a plain OGBench env's raw observation and `info["goal"]` (`dfplan.envs.ogbench.PlainObservation`)."""
        return cube_env.PlainObservation(self.num_cubes, self.subgoals)

    def make_env(self, goal=None, max_episode_steps=None, render_mode=None):
        self.check_goal(goal)
        return cube_env.make_ogbench_env(self.name, max_episode_steps=max_episode_steps, render_mode=render_mode,
                                         subgoals=self.subgoals)

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

    # --- scoring and pictures ------------------------------------------------------------------------
    def summarize(self, episodes, ref_scores=None) -> dict:
        return {**super().summarize(episodes, ref_scores),
                **success_by_task(episodes, cube_env.task_id_of, cube_env.NUM_TASKS)}

    def describe(self, s: dict) -> str:
        per_task = " ".join(f"t{k}:{s[f'task{k}_success']:.0f}" for k in range(1, 6) if f"task{k}_success" in s)
        return (f"{self.name}, {s['episodes']} episodes: success {s['score_mean']:.1f} ± {s['score_se']:.1f} % "
                f"(every cube within 0.04 m of its target at the end; per task {per_task}), "
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


def named_tasks() -> dict:
    return {name: (lambda name=name: CubeTask(name)) for name in cube_env.OGBENCH_TASKS}


def from_spec(spec: dict) -> CubeTask:
    return CubeTask(spec["name"])
