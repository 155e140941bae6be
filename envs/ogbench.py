"""OGBench cube-single / cube-double: env factory, the subgoal observation, the play-data recipe and `.npz` import.

Env facts (ogbench 1.2.2, `manipspace/envs/cube_env.py`): a UR5e arm with a Robotiq gripper at 20 Hz, action 5-D in
[-1, 1] (effector dx, dy, dz, dyaw, gripper). The observation is 19 proprioceptive dims (joint pos 0:6, joint vel
6:12, effector xyz 12:15, cos/sin yaw 15:17, gripper opening 17, contact 18) + 9 per cube (xyz, quaternion, cos/sin
yaw). Positions are in *scaled units*: (xyz - [0.425, 0, 0]) * 10, so the env's success distance of 0.04 m is 0.4.
Evaluation: five fixed tasks (`reset(options=dict(task_id=i))`, i = 1..5), success = every cube within 0.04 m of its
target (`info["success"]`; the env terminates there), within 200 (single) / 500 (double) steps.

What the models see (`SubgoalObservation`): the env's observation with the *subgoal offsets* appended (28 + 3 = 31-D
single, 37 + 6 = 43-D double): per cube, subgoal minus current position, where the subgoal is the target of the one
cube being moved now and the current position of every other cube (so only that cube's offset is non-zero). The
data carries the same thing in hindsight: during each task of the scripted play oracle, the cube positions at the
task's end. So DF, Diffuser and BC are goal-conditioned by their input, one cube at a time.
`desired_goal` is the subgoal too (what the agent is asked to reach now; guidance pulls the cubes to it),
`achieved_goal` every cube's position, `info["goal_positions"]` every cube's final target (scaled units).

The recipe (`generate_ogbench_dataset`) follows OGBench's `data_gen_scripts/generate_manipspace.py` for the "play"
datasets: `CubePlanOracle` (noise 0.1, smoothing 0.5) in `mode='data_collection'`, 1,001-step episodes, a new random
target whenever the oracle finishes one (double: stacking probability uniform in [0, 0.25] per episode).
Episode `i` seeds both the env and numpy's global RNG (which the oracle draws from) with `seed + i`, so a dataset is
a pure function of its arguments however many worker processes collect it.
"""

from __future__ import annotations

import importlib
import os
import time
from concurrent.futures import ProcessPoolExecutor

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

from dfplan.errors import UserError
from dfplan.types import Controller

from .recipes import claim_dataset_id, write_dataset

OGBENCH_TASKS = {"ogbench-cube-single": "cube-single", "ogbench-cube-double": "cube-double"}
NUM_CUBES = {"ogbench-cube-single": 1, "ogbench-cube-double": 2}
NAMESPACE = "dfplan/ogbench"
DEFAULT_EPISODES = 1000  # OGBench's play datasets: 1,000 training episodes of 1,001 steps
EPISODE_STEPS = 1001
NUM_TASKS = 5

PROPRIO_DIMS = 19
CUBE_DIMS = 9
CUBE_YAW = (7, 8)  # cos, sin of a cube's yaw among its 9 dims
EFFECTOR = (12, 13, 14)
EFFECTOR_POSE = (12, 13, 14, 15, 16)  # xyz, cos yaw, sin yaw
GRIPPER = 17  # gripper opening
GRIPPER_OPEN = 0.5  # an opening reading below this: the fingers are apart (closed on a cube it reads 1.1-1.7)
XYZ_CENTER = np.array([0.425, 0.0, 0.0])
XYZ_SCALE = 10.0
SUCCESS_DISTANCE = 0.04 * XYZ_SCALE  # the env's 0.04 m, in scaled units


def to_metres(xyz) -> np.ndarray:
    """Positions [..., 3] in the observation's scaled units -> the env's metres (for pictures)."""
    return np.asarray(xyz) / XYZ_SCALE + XYZ_CENTER
RELEASE_DISTANCE = 0.06 * XYZ_SCALE  # a placed cube counts as let go once the effector is this far from it
ACTION_RANGE = np.array([0.05, 0.05, 0.05, 0.3, 1.0])  # action 1.0 = effector +5 cm, yaw +0.3 rad, opening +1
# Free spots (metres) where a cube is parked when every cube's target is taken by another cube (the swap task).
PARKING = np.array([[0.35, 0.0, 0.02], [0.50, 0.0, 0.02], [0.35, 0.2, 0.02], [0.35, -0.2, 0.02],
                    [0.50, 0.2, 0.02], [0.50, -0.2, 0.02]])


def _short(name: str) -> str:
    for short, base in OGBENCH_TASKS.items():
        if name in (short, base, f"{base}-v0", f"{base}-play-v0"):
            return short
    raise ValueError(f"unknown OGBench task {name!r}; known: {sorted(OGBENCH_TASKS)}")


def cube_dims(num_cubes: int) -> tuple[int, ...]:
    """State dims of the cube positions: 19:22 for cube 0, 28:31 for cube 1, ..."""
    return tuple(PROPRIO_DIMS + CUBE_DIMS * c + k for c in range(num_cubes) for k in range(3))


def cube_positions(obs: np.ndarray, num_cubes: int) -> np.ndarray:
    """Cube positions [..., n, 3] (scaled units) from raw env observations [..., D]."""
    obs = np.asarray(obs)
    return obs[..., list(cube_dims(num_cubes))].reshape(*obs.shape[:-1], num_cubes, 3)


def to_scaled(xyz_m: np.ndarray) -> np.ndarray:
    return (np.asarray(xyz_m) - XYZ_CENTER) * XYZ_SCALE


def choose_subgoal(cubes: np.ndarray, goals: np.ndarray, current: int | None, effector: np.ndarray | None = None,
                   target: np.ndarray | None = None) -> tuple[int | None, np.ndarray]:
    """Which cube to move next and where: (cube index or None when all are placed, its target [3], scaled units).

    Keep the cube being moved (`current`, headed for `target`: its goal when None, or a parking spot) until it is
    there and let go (the effector `RELEASE_DISTANCE` away from it, when `effector` is given: the play data's tasks
    end only after the oracle has opened the gripper and lifted, so a subgoal that moved on while the cube is still
    held would ask for what the data never shows); else take the unplaced cube with the lowest target (a stack is
    built bottom up). A target that another cube occupies is cleared first: that cube goes to its own target if
    free, else to the first free parking spot (the swap task).
    """
    placed = np.linalg.norm(cubes - goals, axis=-1) <= SUCCESS_DISTANCE
    if current is not None:
        aim = goals[current] if target is None else np.asarray(target)
        held = effector is not None and np.linalg.norm(np.asarray(effector) - cubes[current]) < RELEASE_DISTANCE
        if np.linalg.norm(cubes[current] - aim) > SUCCESS_DISTANCE or held:
            return current, aim
    todo = [c for c in np.argsort(goals[:, 2], kind="stable") if not placed[c]]
    if not todo:
        return None, goals[0]
    c = int(todo[0])
    blockers = [b for b in range(len(cubes)) if b != c and _occupies(cubes[b], goals[c])]
    if not blockers:
        return c, goals[c]
    b = blockers[0]
    own_free = not any(_occupies(cubes[o], goals[b]) for o in range(len(cubes)) if o != b)
    if own_free:
        return b, goals[b]
    spot = free_spot(cubes, goals)
    return b, (goals[b] if spot is None else spot)


def _occupies(cube: np.ndarray, spot: np.ndarray) -> bool:
    """Does a cube sit on `spot` (same place, same height; a cube under a stacking target does not block it)?"""
    return bool(np.linalg.norm(cube[:2] - spot[:2]) < 2 * SUCCESS_DISTANCE and abs(cube[2] - spot[2]) < 0.3)


def free_spot(cubes: np.ndarray, goals: np.ndarray) -> np.ndarray | None:
    """The first parking spot (scaled units) clear of every cube and every target, or None."""
    taken = np.concatenate([cubes, goals])
    for spot in to_scaled(PARKING):
        if np.min(np.linalg.norm(taken[:, :2] - spot[:2], axis=-1)) >= 2 * SUCCESS_DISTANCE:
            return spot
    return None


def cube_moves(cubes: np.ndarray, goals: np.ndarray, open_: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The moves a planner given every cube's target (`cubes`, `goals` [n, 3]) chooses among, as (cube, its
    target): each open cube (`open_` [n] bool: not at its target) whose target no other cube sits on; when every
    open cube's target is taken (the swap task), each cube that sits on one, to the first free parking spot."""
    n = len(cubes)
    blocked = {c: [b for b in range(n) if b != c and _occupies(cubes[b], goals[c])] for c in np.flatnonzero(open_)}
    moves = [(int(c), goals[c]) for c, by in blocked.items() if not by]
    if moves:
        return moves
    spot = free_spot(cubes, goals)
    if spot is None:  # nowhere to park: the taken targets themselves
        return [(int(c), goals[c]) for c in blocked]
    return [(b, spot) for b in sorted({b for by in blocked.values() for b in by})]


def with_offsets(raw_obs: np.ndarray, subgoal: np.ndarray, num_cubes: int) -> np.ndarray:
    """The state the models see: the env's observation and, per cube, subgoal minus position [.., D + 3n] (zero for
    every cube but the one to move: which cube and where to are read off directly, not learned as a comparison)."""
    cubes = cube_positions(raw_obs, num_cubes).reshape(*np.shape(raw_obs)[:-1], 3 * num_cubes)
    return np.concatenate([raw_obs, subgoal - cubes], axis=-1)


def present_cube(obs: np.ndarray, goals: np.ndarray, cubes_to_move: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(observations with subgoal offsets [N, D + 3n], subgoals [N, 3n]) when only cube `cubes_to_move[i]` of env i
    is to move (-1: none) toward its target in `goals` [N, 3n]: the others' subgoal is where they are. `obs` [N, D + 3n]
    (offsets of any subgoal)."""
    n = goals.shape[-1] // 3
    raw = np.asarray(obs)[:, :PROPRIO_DIMS + CUBE_DIMS * n]
    sub = cube_positions(raw, n).copy()  # [N, n, 3]
    rows = np.flatnonzero(np.asarray(cubes_to_move) >= 0)
    picked = np.asarray(cubes_to_move)[rows]
    sub[rows, picked] = np.asarray(goals).reshape(len(raw), n, 3)[rows, picked]
    sub = sub.reshape(len(raw), 3 * n)
    return with_offsets(raw, sub, n), sub


def subgoal_positions(cubes: np.ndarray, cube: int | None, target: np.ndarray) -> np.ndarray:
    """The subgoal [3n]: `target` for `cube`, the current position for every other cube."""
    out = np.array(cubes, dtype=np.float64)
    if cube is not None:
        out[cube] = target
    return out.reshape(-1)


def align_grasp(states: np.ndarray, targets: np.ndarray, num_cubes: int, radius: float) -> np.ndarray:
    """Targets [N, D] for the low-level policy, refined by two rules the plan cannot be trusted with:

    - Face the cube: where the gripper is open within `radius` (scaled units, in xy) of a cube, the effector yaw is
      the cube's plus the multiple of 90 degrees nearest the effector's own. The gripper holds a cube only across
      its faces; the play oracle turns to the nearest one, so the data's yaw has modes 90 degrees apart, and a plan
      drawn near their mean can face the corners (such a grasp slips in mid-carry).
    - Retry an empty grasp: where the gripper is closed with no cube within `RELEASE_DISTANCE` of the effector, the
      opening is set to open. A grasp that closed on nothing is otherwise carried on: the model, shown a closed
      gripper, plans the cube as if it were in it."""
    states, targets = np.asarray(states), np.array(targets, copy=True)
    offsets = cube_positions(states, num_cubes) - states[:, None, list(EFFECTOR)]  # [N, n, 3]
    distance = np.linalg.norm(offsets[..., :2], axis=-1)  # [N, n], in xy
    nearest = PROPRIO_DIMS + CUBE_DIMS * distance.argmin(1)  # the nearest cube's first dim
    rows = np.arange(len(states))
    cube_yaw = np.arctan2(states[rows, nearest + CUBE_YAW[1]], states[rows, nearest + CUBE_YAW[0]])
    effector_yaw = np.arctan2(states[:, EFFECTOR_POSE[4]], states[:, EFFECTOR_POSE[3]])
    aligned = cube_yaw + np.round((effector_yaw - cube_yaw) / (np.pi / 2)) * (np.pi / 2)
    is_open = states[:, GRIPPER] < GRIPPER_OPEN
    near = (distance.min(1) <= radius) & is_open
    targets[near, EFFECTOR_POSE[3]], targets[near, EFFECTOR_POSE[4]] = np.cos(aligned[near]), np.sin(aligned[near])
    reach = np.linalg.norm(offsets, axis=-1).min(1)
    targets[~is_open & (reach > RELEASE_DISTANCE), GRIPPER] = 0.0  # the open gripper's reading
    return targets


def track_action(states: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Actions [N, 5] that move the effector from `states` to the planned `targets` [N, D] in one step: position,
    yaw and gripper opening differences divided by the env's action range (as OGBench's oracle computes them)."""
    xyz = (targets[:, list(EFFECTOR)] - states[:, list(EFFECTOR)]) / XYZ_SCALE
    yaw = np.arctan2(targets[:, 16], targets[:, 15]) - np.arctan2(states[:, 16], states[:, 15])
    yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
    opening = (targets[:, 17] - states[:, 17]) / 3.0
    return np.clip(np.column_stack([xyz, yaw, opening]) / ACTION_RANGE, -1.0, 1.0).astype(np.float32)


def goal_observation(obs: np.ndarray, goals: np.ndarray, subgoals: str,
                     moving: tuple | None) -> tuple[dict, tuple | None]:
    """(the dict observation the models read, (cube, target) being moved now) from a raw observation [D] and every
    cube's target `goals` [n, 3] (scaled units): with `subgoals="one_cube"` the subgoal of `choose_subgoal`, which
    keeps `moving` (the cube moved so far and where to) until it is there and let go; with "all" every cube's target
    at once."""
    cubes = cube_positions(obs, len(goals))
    if subgoals == "all":
        sub, moving = np.asarray(goals, dtype=np.float64).reshape(-1), None
    else:
        current, aim = moving if moving is not None else (None, None)
        cube, target = choose_subgoal(cubes, goals, current, effector=obs[list(EFFECTOR)], target=aim)
        sub, moving = subgoal_positions(cubes, cube, target), (cube, target) if cube is not None else None
    return ({"observation": with_offsets(obs, sub, len(goals)), "achieved_goal": cubes.reshape(-1),
             "desired_goal": sub}, moving)


class PlainObservation:
    """Reads a plain OGBench env's observations in a user's own loop: `adapter(obs, goal=info["goal"])` turns the
    raw observation [D] or [N, D] and the goal observation OGBench gives in `info` into the dict our wrapper
    (`SubgoalObservation`) would have made, keeping the one-cube subgoal layer's choice per env between calls
    (`reset()` at each episode's start). Our own dict observations pass through."""

    def __init__(self, num_cubes: int, subgoals: str = "one_cube"):
        self.num_cubes, self.subgoals = num_cubes, subgoals
        self.moving: list = []  # per env: (cube, target) the subgoal layer is moving, or None

    def reset(self) -> None:
        self.moving = []

    def __call__(self, obs, goal=None):
        if isinstance(obs, dict):
            return obs
        raw = np.asarray(obs, dtype=np.float64)
        want = PROPRIO_DIMS + CUBE_DIMS * self.num_cubes
        if goal is None:
            raise UserError("a plain OGBench observation needs its goal: call act(obs, goal=info['goal'])")
        goals = np.asarray(goal, dtype=np.float64)
        if raw.shape[-1] != want or goals.shape != raw.shape or raw.ndim not in (1, 2):
            raise UserError(f"a plain {self.num_cubes}-cube OGBench observation and its goal are [{want}] or "
                            f"[N, {want}], got {raw.shape} and {goals.shape}")
        rows, goal_rows = np.atleast_2d(raw), np.atleast_2d(goals)
        self.moving += [None] * (len(rows) - len(self.moving))
        outs = []
        for i, (o, g) in enumerate(zip(rows, goal_rows)):
            out, self.moving[i] = goal_observation(o, cube_positions(g, self.num_cubes), self.subgoals, self.moving[i])
            outs.append(out)
        batch = {k: np.stack([o[k] for o in outs]) for k in outs[0]}
        return batch if raw.ndim == 2 else {k: v[0] for k, v in batch.items()}


class SubgoalObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """OGBench's array observation -> dict (observation + subgoal offsets, achieved_goal, desired_goal = the subgoal);
    see the module doc.

    `subgoals="one_cube"` presents one cube's target at a time (`choose_subgoal`); `"all"` appends every cube's
    target at once (plain goal conditioning; for cube-single the two are the same). `reset(seed=s)` without a
    task_id plays task `1 + s % 5`, so consecutive seeds cycle through the five evaluation tasks.
    """

    def __init__(self, env: gym.Env, num_cubes: int, subgoals: str = "one_cube"):
        gym.utils.RecordConstructorArgs.__init__(self, num_cubes=num_cubes, subgoals=subgoals)
        gym.Wrapper.__init__(self, env)
        if subgoals not in ("one_cube", "all"):
            raise ValueError(f"subgoals must be 'one_cube' or 'all', got {subgoals!r}")
        self.num_cubes, self.subgoals = num_cubes, subgoals
        raw = env.observation_space.shape[0]
        n3 = 3 * num_cubes
        box = lambda d: gym.spaces.Box(-np.inf, np.inf, (d,), np.float64)  # noqa: E731
        self.observation_space = gym.spaces.Dict(
            {"observation": box(raw + n3), "achieved_goal": box(n3), "desired_goal": box(n3)})
        self._goals = np.zeros((num_cubes, 3))
        self._moving: tuple | None = None  # (cube, target) the subgoal layer is moving
        self.task_id: int | None = None

    def _dict(self, obs: np.ndarray) -> dict:
        out, self._moving = goal_observation(obs, self._goals, self.subgoals, self._moving)
        return out

    def reset(self, *, seed=None, options=None):
        options = dict(options or {})
        if "task_id" not in options and "task_info" not in options:
            options["task_id"] = task_id_of(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        self.task_id = options.get("task_id")
        self._goals = cube_positions(info["goal"], self.num_cubes).astype(np.float64)
        self._moving = None
        info.update(task_id=self.task_id, goal_positions=self._goals.reshape(-1).copy())
        return self._dict(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info.update(task_id=self.task_id, goal_positions=self._goals.reshape(-1).copy())
        return self._dict(obs), reward, terminated, truncated, info


def import_ogbench(part: str = "manipspace"):
    """The optional ogbench package, with its `part` imported (which registers that family's envs), or a UserError
    that says how to install it."""
    try:
        ogbench = importlib.import_module("ogbench")
        importlib.import_module(f"ogbench.{part}")
    except ImportError as err:
        raise UserError(f"the OGBench tasks need the ogbench package ({err}); install it with: "
                        f"pip install 'dfplan[ogbench]'") from err
    return ogbench


def _make_raw(short: str, mode: str = "task", max_episode_steps: int | None = None, render_mode: str | None = None):
    ogbench = import_ogbench()

    kwargs = {"max_episode_steps": int(max_episode_steps)} if max_episode_steps else {}
    if mode == "task":
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        return ogbench.make_env_and_datasets(f"{OGBENCH_TASKS[short]}-play-v0", env_only=True, **kwargs)
    return gym.make(f"{OGBENCH_TASKS[short]}-v0", terminate_at_goal=False, mode="data_collection", **kwargs)


def make_ogbench_env(name: str, max_episode_steps: int | None = None, render_mode: str | None = None,
                     subgoals: str = "one_cube") -> gym.Env:
    """An evaluation env (OGBench's task mode) with the subgoal dict observation (`SubgoalObservation`)."""
    short = _short(name)
    return SubgoalObservation(_make_raw(short, "task", max_episode_steps, render_mode), NUM_CUBES[short], subgoals)


def default_dataset_id(name: str, episodes: int | None = None, npz: str | None = None) -> str:
    """'ogbench-cube-single' -> 'dfplan/ogbench/cube-single-play-v1' (other sizes: '...-play-300ep-v1'; an imported
    file: '...-<file stem>-v1'; v1: subgoal offsets)."""
    base = f"{NAMESPACE}/{OGBENCH_TASKS[_short(name)]}"
    if npz is not None:
        return f"{base}-{os.path.splitext(os.path.basename(str(npz)))[0].replace('.', '-')}-v1"
    size = "" if episodes in (None, DEFAULT_EPISODES) else f"-{episodes}ep"
    return f"{base}-play{size}-v1"


def task_id_of(seed: int | None) -> int:
    """The evaluation task (1..5) an env seed plays when reset without a task_id."""
    return 1 + (int(seed) if seed is not None else 0) % NUM_TASKS


# --- hindsight subgoals ---------------------------------------------------------------------------------------
def hindsight_subgoals(cubes: np.ndarray, task_ends: list[int]) -> np.ndarray:
    """The subgoal cube positions for every step [T, 3n]: during each task (steps up to and including a
    `task_ends` index), where the cubes are at that task's end; after the last end, where they are at the last step.
    `cubes` [T, n, 3] (scaled units)."""
    T = len(cubes)
    out = np.empty((T, cubes.shape[1] * 3))
    start = 0
    for end in [e for e in sorted(task_ends) if e < T - 1] + [T - 1]:
        out[start:end + 1] = cubes[end].reshape(-1)
        start = end + 1
    return out


def task_ends_from_motion(cubes: np.ndarray, still: float = 0.005, min_move: float = 0.2, gap: int = 5) -> list[int]:
    """Task boundaries of a play episode recovered from cube motion alone (for `.npz` files that do not record
    them): a task ends halfway between one carry's end and the next carry's start. A carry is a stretch where some
    cube moves more than `still` per step (gaps under `gap` steps merged) and a cube travels at least `min_move`."""
    step = np.linalg.norm(np.diff(cubes, axis=0), axis=-1).max(axis=-1)  # [T-1]
    moving = np.flatnonzero(step > still)
    if len(moving) == 0:
        return []
    carries, a, b = [], moving[0], moving[0]
    for t in moving[1:]:
        if t - b > gap:
            carries.append((a, b))
            a = t
        b = t
    carries.append((a, b))
    carries = [(a, b) for a, b in carries if np.linalg.norm(cubes[b + 1] - cubes[a], axis=-1).max() >= min_move]
    return [int((b1 + 1 + a2) // 2) for (_, b1), (a2, _) in zip(carries, carries[1:])]


def _labelled_episode(idx: int, seed, raw_obs: np.ndarray, actions: np.ndarray, num_cubes: int,
                      task_ends: list[int]) -> EpisodeBuffer:
    """A Minari episode: raw observations [T+1, D] with their hindsight subgoal offsets appended. OGBench's play data
    has no reward (the task reward needs a task), so rewards are 0; the episode ends truncated."""
    cubes = cube_positions(raw_obs, num_cubes)
    sub = hindsight_subgoals(cubes, task_ends)
    T = len(actions)
    obs = {"observation": with_offsets(raw_obs, sub, num_cubes), "achieved_goal": cubes.reshape(T + 1, -1),
           "desired_goal": sub}
    return EpisodeBuffer(id=idx, seed=seed, observations={k: v.astype(np.float64) for k, v in obs.items()},
                         actions=actions.astype(np.float32), rewards=np.zeros(T), terminations=np.zeros(T, bool),
                         truncations=np.arange(T) == T - 1, infos={})


# --- the play recipe ----------------------------------------------------------------------------------------
def _play_episode(args) -> tuple[np.ndarray, np.ndarray, list[int], list[bool]]:
    """One play episode of the scripted oracle: (raw obs [T+1, D], actions [T, 5], task ends, task successes)."""
    short, ep_seed, noise, noise_smoothing, steps = args
    import_ogbench()
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle

    env = _episode_env(short, steps)
    np.random.seed(ep_seed)  # the oracle and p_stack draw from numpy's global RNG (as in OGBench's script)
    p_stack = 0.0 if NUM_CUBES[short] == 1 else np.random.uniform(0.0, 0.25)
    agent = CubePlanOracle(env=env, noise=noise, noise_smoothing=noise_smoothing)
    ob, info = env.reset(seed=ep_seed)
    agent.reset(ob, info)
    obs, actions, ends, wins = [ob], [], [], []
    for t in range(steps):
        action = np.clip(np.asarray(agent.select_action(ob, info)), -1.0, 1.0)
        ob, _, _, _, info = env.step(action)
        obs.append(ob)
        actions.append(action)
        if agent.done:
            ends.append(t + 1)  # obs index at which this task ended
            wins.append(bool(info["success"]))
            agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
            agent.reset(agent_ob, agent_info)
    return np.asarray(obs), np.asarray(actions, dtype=np.float32), ends, wins


_ENVS: dict = {}


def _episode_env(short: str, steps: int):
    """One data-collection env per worker process and task, reused across its episodes."""
    key = (short, steps)
    if key not in _ENVS:
        _ENVS[key] = _make_raw(short, "data_collection", max_episode_steps=steps + 1)
    return _ENVS[key]


def collect_play_episodes(name: str, episodes: int, seed: int, noise: float = 0.1, noise_smoothing: float = 0.5,
                          steps: int = EPISODE_STEPS, workers: int | None = None, progress: bool = True):
    """Run the play oracle for `episodes` episodes of `steps` steps across `workers` processes; returns
    (Minari episode buffers, the oracle's task success rate in [0, 1], number of oracle tasks)."""
    short = _short(name)
    workers = max(1, min(workers or os.cpu_count() or 1, episodes))
    jobs = [(short, seed + i, noise, noise_smoothing, steps) for i in range(episodes)]
    bar = tqdm(total=episodes, desc=f"collect {short}", unit="ep", disable=not progress, mininterval=1.0)
    buffers, wins = [], []
    if workers == 1:
        results = map(_play_episode, jobs)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_play_episode, jobs, chunksize=max(1, min(8, episodes // (4 * workers))))
    try:
        for i, (raw, act, ends, won) in enumerate(results):
            buffers.append(_labelled_episode(i, seed + i, raw, act, NUM_CUBES[short], ends))
            wins.extend(won)
            bar.update()
    finally:
        bar.close()
        if workers > 1:
            pool.shutdown(cancel_futures=True)
    return buffers, (float(np.mean(wins)) if wins else 0.0), len(wins)


def load_ogbench_npz(path: str, name: str) -> list:
    """Minari episode buffers from an OGBench `.npz` file (`observations`, `actions`, `terminals`), with the
    hindsight subgoals recovered from cube motion (`task_ends_from_motion`)."""
    short = _short(name)
    with np.load(path) as data:
        missing = {"observations", "actions", "terminals"} - set(data.files)
        if missing:
            raise ValueError(f"{path} is not an OGBench dataset: it lacks {sorted(missing)}")
        obs, act, term = (np.asarray(data[k]) for k in ("observations", "actions", "terminals"))
    n = NUM_CUBES[short]
    want = PROPRIO_DIMS + CUBE_DIMS * n
    if obs.ndim != 2 or obs.shape[1] != want or act.shape != (len(obs), 5):
        raise ValueError(f"{path}: observations {obs.shape} / actions {act.shape} do not fit {short} "
                         f"(need [N, {want}] and [N, 5]); is it a state-based {OGBENCH_TASKS[short]} file?")
    if not (np.isfinite(obs).all() and np.isfinite(act).all()):
        raise ValueError(f"{path} holds NaN or inf values")
    ends = np.flatnonzero(term.astype(bool))
    buffers, start = [], 0
    for i, end in enumerate(list(ends) + ([len(obs) - 1] if not len(ends) or ends[-1] != len(obs) - 1 else [])):
        raw, a = obs[start:end + 1], act[start:end]  # the file stores no final observation: drop the last action
        if len(a) >= 2:
            buffers.append(_labelled_episode(i, None, raw, a, n, task_ends_from_motion(cube_positions(raw, n))))
        start = end + 1
    if not buffers:
        raise ValueError(f"{path} holds no episode of at least 3 steps")
    return buffers


class CubeOracleController(Controller):
    """OGBench's scripted `CubePlanOracle` (noise-free) as a controller on our dict observations: it reads the
    effector, gripper and cube poses and the subgoal from the observation, counts time itself, and plans a new
    pick-and-place whenever the subgoal layer picks another cube. One oracle per env of a batch."""

    def __init__(self, name: str):
        self.short = _short(name)
        self.n = NUM_CUBES[self.short]
        self._env = make_ogbench_env(self.short)  # the oracle reads the action scaling and the arm bounds from it
        self._dt = self._env.unwrapped._control_timestep
        self.slots: list = []
        self.seed = 0

    def reset(self, seed=None) -> None:
        self.slots = []
        self.seed = 0 if seed is None else int(seed)

    def _info(self, o: np.ndarray, t: int) -> dict:
        info = {"time": np.array([t * self._dt]), "proprio/effector_pos": o[12:15] / XYZ_SCALE + XYZ_CENTER,
                "proprio/effector_yaw": np.array([np.arctan2(o[16], o[15])]),
                "proprio/gripper_opening": np.array([o[17] / 3.0])}
        for c in range(self.n):
            base = PROPRIO_DIMS + CUBE_DIMS * c
            info[f"privileged/block_{c}_pos"] = o[base:base + 3] / XYZ_SCALE + XYZ_CENTER
            info[f"privileged/block_{c}_yaw"] = np.array([np.arctan2(o[base + 8], o[base + 7])])
        return info

    def act(self, obs):
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle

        rows = np.atleast_2d(np.asarray(obs["observation"], dtype=np.float64))
        while len(self.slots) < len(rows):
            self.slots.append({"t": 0, "agent": None, "target": None})
        actions = np.zeros((len(rows), 5), dtype=np.float32)
        for k, (o, slot) in enumerate(zip(rows, self.slots)):
            info = self._info(o, slot["t"])
            offsets = o[-3 * self.n:].reshape(self.n, 3)
            sub = cube_positions(o, self.n) + offsets
            moved = np.linalg.norm(offsets, axis=-1)
            c = int(np.argmax(moved)) if moved.max() > 1e-9 else None  # the cube whose subgoal is not where it is
            if c is not None and (slot["agent"] is None or slot["target"] is None
                                  or np.linalg.norm(slot["target"] - sub[c]) > 1e-6):
                slot["target"] = sub[c].copy()
                info.update({"privileged/target_block": c, "privileged/target_block_yaw": np.zeros(1),
                             "privileged/target_block_pos": sub[c] / XYZ_SCALE + XYZ_CENTER})
                slot["agent"] = CubePlanOracle(env=self._env, noise=0.0)
                saved = np.random.get_state()  # the oracle draws keyframe jitter from numpy's global RNG
                np.random.seed([self.seed, k, slot["t"]])
                try:
                    slot["agent"].reset(None, info)
                finally:
                    np.random.set_state(saved)
            if slot["agent"] is not None:
                actions[k] = np.clip(slot["agent"].select_action(None, info), -1.0, 1.0)
            slot["t"] += 1
        return actions if np.ndim(obs["observation"]) == 2 else actions[0]


def oracle_success(name: str, episodes: int = 50, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Success (0/1) of `CubeOracleController` on evaluation episodes `seed .. seed + episodes - 1` (task
    `1 + seed % 5`): the benchmarks' ceiling and the dataset's reference max."""
    env = make_ogbench_env(name)
    oracle = CubeOracleController(name)
    wins = []
    for ep in tqdm(range(episodes), desc=f"oracle {_short(name)}", unit="ep", disable=not progress):
        obs, _ = env.reset(seed=seed + ep)
        oracle.reset(seed=seed + ep)
        done, info = False, {}
        while not done:
            obs, _, terminated, truncated, info = env.step(oracle.act(obs))
            done = terminated or truncated
        wins.append(bool(info["success"]))
    env.close()
    return np.asarray(wins, dtype=float)


def generate_ogbench_dataset(name: str, episodes: int = DEFAULT_EPISODES, seed: int = 0,
                             dataset_id: str | None = None, overwrite: bool = False, noise: float = 0.1,
                             workers: int | None = None, npz: str | None = None, progress: bool = True,
                             ref_episodes: int = 25):
    """Generate (or, with `npz`, import) and atomically write an OGBench cube dataset; returns it loaded through
    Minari. Reference scores are success rates in percent: a uniform random policy (min, 0 by the tasks' design)
    and the noise-free oracle (max) over `ref_episodes` evaluation episodes."""
    short = _short(name)
    dataset_id = dataset_id or default_dataset_id(short, episodes, npz)
    claim_dataset_id(dataset_id, overwrite)
    t0 = time.perf_counter()
    if npz is not None:
        buffers, oracle_rate, tasks = load_ogbench_npz(npz, short), None, None
        algorithm = f"imported from {os.path.basename(npz)} (hindsight subgoals from cube motion)"
    else:
        buffers, oracle_rate, tasks = collect_play_episodes(short, episodes, seed, noise=noise, workers=workers,
                                                            progress=progress)
        algorithm = f"ogbench-CubePlanOracle-play(noise={noise},smoothing=0.5)+hindsight-subgoals"
    ref_max = 100.0 * float(oracle_success(short, ref_episodes, seed=seed).mean())
    env = make_ogbench_env(short)
    try:
        desc = (f"OGBench {OGBENCH_TASKS[short]} play data ({len(buffers)} episodes"
                + (f" of {EPISODE_STEPS} steps, env seeds {seed}..{seed + episodes - 1}; the oracle placed the target "
                   f"cube in {100 * oracle_rate:.1f}% of its {tasks} tasks" if oracle_rate is not None else "")
                + "); observations carry the hindsight subgoal cube positions; generated by dfplan.")
        dataset = write_dataset(dataset_id, buffers, env, env.spec, algorithm_name=algorithm,
                                ref_min_score=0.0, ref_max_score=ref_max, num_episodes_average_score=ref_episodes,
                                code_permalink="dfplan.envs.ogbench.generate_ogbench_dataset", description=desc)
    finally:
        env.close()
    dataset.generation_seconds = time.perf_counter() - t0
    dataset.data_success_rate = oracle_rate
    return dataset
