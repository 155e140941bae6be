"""OGBench PointMaze navigate (medium, large, giant): env factory, the navigate-data recipe and `.npz` import.

Env facts (ogbench 1.2.2, `locomaze/maze.py`, `locomaze/point.py`): a point mass moved kinematically, xy += 0.2 * a
for an action a in [-1, 1]^2 (walls stop it; its velocity is zeroed every step, so xy is the whole state), in mazes of
4-unit cells. The observation is the xy position. Evaluation: five fixed tasks (`reset(options=dict(task_id=i))`),
`info["goal"]` = the goal observation (xy), success = within 1.0 of the goal (`info["success"]`), 1,000 steps.
OGBench jitters the start and the goal by up to a quarter cell with numpy's global RNG; `NavigateObservation` draws
that jitter from its own RNG seeded by the env seed (same distribution, reproducible). `jitter=False` removes it, as
the MCTD papers did.

What the models see (`NavigateObservation`): a dict with `observation` = xy, `achieved_goal` = xy and `desired_goal` =
the goal's xy. Env seed `s` plays evaluation task `1 + s % 5`. The `-goal` tasks (`ogbench-pointmaze-giant-goal`, ...)
are the same envs with the goal appended to the observation ([x, y, goal x, goal y]), so a model trained on their
data (where the goal is the one the expert was walking to) is goal-conditioned by its input.

The recipe (`generate_navigate_dataset`) follows OGBench's `data_gen_scripts/generate_locomaze.py` for the
"navigate" datasets: each episode starts in a random free cell with a goal in a random vertex cell (not a corridor);
the point's expert steps toward OGBench's own BFS subgoal (`get_oracle_subgoal`) as a unit vector plus Gaussian
noise (sigma 0.2), clipped; when it reaches the goal a new one is drawn, and the episode runs on for its 1,000 steps.
Episode `i` is drawn from `numpy.random.default_rng(seed + i)` alone, so a dataset is a pure function of its arguments.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

from .ogbench import import_ogbench, task_id_of  # OGBench's five evaluation tasks per env
from .recipes import claim_dataset_id, write_dataset

NAVIGATE_MAZES = {"ogbench-pointmaze-medium": "medium", "ogbench-pointmaze-large": "large",
                  "ogbench-pointmaze-giant": "giant"}
GOAL_SUFFIX = "-goal"  # task name suffix: the goal appended to the observation
NAMESPACE = "dfplan/ogbench"
DEFAULT_EPISODES = 1000  # OGBench's navigate datasets: 1,000 training episodes of 1,001 steps
EPISODE_STEPS = 1000
STEP_SIZE = 0.2  # the point moves by STEP_SIZE * action per step
BLOCKED_FRACTION = 0.3  # `blocked`: a step that moved the point less than this share of what its action commanded
MIN_BLOCKED_MOVE = 0.1  # `blocked`: commands shorter than this (metres) are never counted
SUCCESS_DISTANCE = 1.0  # OGBench's goal tolerance for the point
MAZE_UNIT = 4.0
DATA_NOISE = 0.2  # OGBench's Gaussian action noise for the navigate data


def maze_of(name: str) -> str:
    """The OGBench maze of a task name: 'ogbench-pointmaze-giant(-goal)' -> 'giant'."""
    return NAVIGATE_MAZES.get(name.removesuffix(GOAL_SUFFIX), name)


def goal_in_state(name: str) -> bool:
    """Does the task `name` append the goal to the observation?"""
    return name.endswith(GOAL_SUFFIX)


def make_raw_env(maze: str, max_episode_steps: int | None = None, render_mode: str | None = None) -> gym.Env:
    """OGBench's own navigate env, as `ogbench.make_env_and_datasets(..., env_only=True)` makes it, except that it
    runs on after the goal (success counts once reached)."""
    ogbench = import_ogbench("locomaze")
    kwargs = {"max_episode_steps": int(max_episode_steps)} if max_episode_steps else {}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return ogbench.make_env_and_datasets(f"pointmaze-{maze_of(maze)}-navigate-v0", env_only=True,
                                         terminate_at_goal=False, **kwargs)


class _SeededJitter:
    """OGBench's `add_noise` (uniform within a quarter cell), drawn from a generator of ours instead of numpy's
    global RNG; `scale=0` removes the jitter."""

    def __init__(self, unit: float, scale: float = 1.0):
        self.unit, self.scale = unit, scale
        self.rng = np.random.default_rng(0)

    def __call__(self, xy):
        dx, dy = self.rng.uniform(-self.scale, self.scale, 2) * self.unit / 4
        return xy[0] + dx, xy[1] + dy


class NavigateObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """OGBench's xy observation -> dict (observation, achieved_goal = xy; desired_goal = the goal's xy); see the
    module doc. `reset(seed=s)` without a task plays task `1 + s % 5` with start/goal jitter drawn from seed s."""

    def __init__(self, env: gym.Env, jitter: bool = True, with_goal: bool = False):
        gym.utils.RecordConstructorArgs.__init__(self, jitter=jitter, with_goal=with_goal)
        gym.Wrapper.__init__(self, env)
        box = lambda d: gym.spaces.Box(-np.inf, np.inf, (d,), np.float64)  # noqa: E731
        self.with_goal = with_goal
        self.observation_space = gym.spaces.Dict({"observation": box(4 if with_goal else 2), "achieved_goal": box(2),
                                                  "desired_goal": box(2)})
        self.jitter = _SeededJitter(env.unwrapped._maze_unit, 1.0 if jitter else 0.0)
        env.unwrapped.add_noise = self.jitter
        self._goal = np.zeros(2)
        self.task_id: int | None = None

    def _dict(self, xy: np.ndarray) -> dict:
        xy = np.asarray(xy, dtype=np.float64)
        state = np.concatenate([xy, self._goal]) if self.with_goal else xy.copy()
        return {"observation": state, "achieved_goal": xy.copy(), "desired_goal": self._goal.copy()}

    def reset(self, *, seed=None, options=None):
        options = dict(options or {})
        if "task_id" not in options and "task_info" not in options:
            options["task_id"] = task_id_of(seed)
        if seed is not None:
            self.jitter.rng = np.random.default_rng(int(seed))
            self.env.action_space.seed(int(seed))  # OGBench takes a few random steps before placing the point
        obs, info = self.env.reset(seed=seed, options=options)
        self.task_id = options.get("task_id")
        self._goal = np.asarray(info["goal"], dtype=np.float64)
        info.update(task_id=self.task_id)
        return self._dict(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info.update(task_id=self.task_id)
        return self._dict(obs), reward, terminated, truncated, info


def make_navigate_env(name: str, max_episode_steps: int | None = None, render_mode: str | None = None,
                      jitter: bool = True) -> gym.Env:
    """An evaluation env with the dict observation (`NavigateObservation`; the goal in it for a `-goal` task)."""
    return NavigateObservation(make_raw_env(name, max_episode_steps, render_mode), jitter=jitter,
                               with_goal=goal_in_state(name))


class PlainObservation:
    """Reads a plain OGBench navigate env's observations in a user's own loop: `adapter(xy, goal=info["goal"])` -> the
    dict `NavigateObservation` makes (`with_goal`: the goal appended). Our own dict observations pass through."""

    def __init__(self, with_goal: bool = False):
        self.with_goal = with_goal

    def reset(self) -> None:
        pass

    def __call__(self, obs, goal=None):
        if isinstance(obs, dict):
            return obs
        from dfplan.errors import UserError

        xy = np.asarray(obs, dtype=np.float64)
        if goal is None:
            raise UserError("a plain OGBench maze observation needs its goal: call act(obs, goal=info['goal'])")
        goal = np.asarray(goal, dtype=np.float64)
        if xy.shape[-1] != 2 or goal.shape != xy.shape or xy.ndim not in (1, 2):
            raise UserError(f"a plain OGBench point observation and its goal are [2] or [N, 2], got {xy.shape} and "
                            f"{goal.shape}")
        state = np.concatenate([xy, goal], axis=-1) if self.with_goal else xy
        return {"observation": state, "achieved_goal": xy.copy(), "desired_goal": goal}


# --- the expert ------------------------------------------------------------------------------------------------
class OracleSubgoals:
    """OGBench's `get_oracle_subgoal` (the centre of the neighbouring cell one BFS step closer to the goal cell, the
    current cell at the goal), with the BFS distances cached per goal cell."""

    def __init__(self, env: gym.Env):
        self.maze = env.unwrapped
        self.walls = np.asarray(self.maze.maze_map) != 0
        self._dist: dict = {}

    def distances(self, goal_ij) -> np.ndarray:
        goal_ij = tuple(int(v) for v in goal_ij)
        if goal_ij not in self._dist:
            dist = np.full(self.walls.shape, -1, dtype=int)
            dist[goal_ij] = 0
            queue = [goal_ij]
            for i, j in queue:  # the list grows while it is read: breadth-first
                for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
                    ni, nj = i + di, j + dj
                    if (0 <= ni < dist.shape[0] and 0 <= nj < dist.shape[1] and not self.walls[ni, nj]
                            and dist[ni, nj] == -1):
                        dist[ni, nj] = dist[i, j] + 1
                        queue.append((ni, nj))
            self._dist[goal_ij] = dist
        return self._dist[goal_ij]

    def __call__(self, xy, goal_xy) -> np.ndarray:
        dist = self.distances(self.maze.xy_to_ij(goal_xy))
        best = start = self.maze.xy_to_ij(xy)
        for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):  # OGBench's order and strict tie-break
            ni, nj = start[0] + di, start[1] + dj
            if (0 <= ni < dist.shape[0] and 0 <= nj < dist.shape[1] and not self.walls[ni, nj]
                    and dist[ni, nj] < dist[best]):
                best = (ni, nj)
        return np.asarray(self.maze.ij_to_xy(best), dtype=np.float64)


def expert_action(subgoals: OracleSubgoals, xy, goal_xy, home_in: bool = False) -> np.ndarray:
    """OGBench's point expert: a unit step toward the oracle subgoal. In the goal's cell that subgoal is the cell's
    centre, which a jittered goal may lie 1.4 from; `home_in` steers to the goal itself there (the controller's
    expert; the data recipe keeps OGBench's rule)."""
    xy = np.asarray(xy, dtype=np.float64)
    target = subgoals(xy, goal_xy)
    if home_in and subgoals.maze.xy_to_ij(xy) == subgoals.maze.xy_to_ij(goal_xy):
        target = np.asarray(goal_xy, dtype=np.float64)
    direction = target - xy
    return direction / (np.linalg.norm(direction) + 1e-6)


class NavigateExpertController:
    """The noise-free data expert as a controller on our dict observations (single or batched): the benchmarks'
    ceiling."""

    def __init__(self, name: str):
        self._env = make_raw_env(name)
        self.subgoals = OracleSubgoals(self._env)

    def reset(self, seed=None) -> None:
        pass

    def act(self, obs):
        xy = np.atleast_2d(obs["achieved_goal"])  # the xy (a `-goal` task's observation holds the goal too)
        goal = np.atleast_2d(obs["desired_goal"])
        actions = np.stack([expert_action(self.subgoals, p, g, home_in=True) for p, g in zip(xy, goal)])
        actions = actions.astype(np.float32)
        actions = np.clip(actions, -1.0, 1.0)
        return actions if np.ndim(obs["observation"]) == 2 else actions[0]


def track_action(states: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Steer the point from `states` [N, 2] to the planned next positions `targets` [N, 2]: the action that lands on
    the target in one step when no wall is in the way (a dead-beat position controller for the kinematic point;
    it needs no velocity term), clipped to the action box."""
    return np.clip((targets[:, :2] - states[:, :2]) / STEP_SIZE, -1.0, 1.0).astype(np.float32)


def blocked(states: np.ndarray, actions: np.ndarray, next_states: np.ndarray) -> np.ndarray:
    """Rows [N] whose step moved the point less than BLOCKED_FRACTION of the STEP_SIZE * |action| it commanded (at
    least MIN_BLOCKED_MOVE): a wall stopped it."""
    commanded = STEP_SIZE * np.linalg.norm(actions[:, :2], axis=-1)
    moved = np.linalg.norm(next_states[:, :2] - states[:, :2], axis=-1)
    return (commanded > MIN_BLOCKED_MOVE) & (moved < BLOCKED_FRACTION * commanded)


# --- the navigate recipe ------------------------------------------------------------------------------------------
def _cells(maze_map: np.ndarray) -> tuple[list, list]:
    """(every free cell, the vertex cells: free cells that are not a straight corridor), as OGBench's script."""
    free, vertex = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            free.append((i, j))
            vertical = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1 \
                and maze_map[i, j + 1] == 1
            horizontal = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] == 1 \
                and maze_map[i + 1, j] == 1
            if not (vertical or horizontal):
                vertex.append((i, j))
    return free, vertex


_ENVS: dict = {}


def _navigate_episode(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One navigate episode: (xy [T+1, 2], actions [T, 2], the goal at each observation [T+1, 2], goals reached)."""
    maze, ep_seed, noise, steps = args
    if maze not in _ENVS:  # one env per worker process and maze, reused across its episodes
        env = NavigateObservation(make_raw_env(maze, max_episode_steps=steps + 1))
        _ENVS[maze] = (env, OracleSubgoals(env), _cells(np.asarray(env.unwrapped.maze_map)))
    env, subgoals, (free, vertex) = _ENVS[maze]
    rng = np.random.default_rng([ep_seed, 1])  # apart from the wrapper's jitter stream (seeded by ep_seed)
    start, goal = free[rng.integers(len(free))], vertex[rng.integers(len(vertex))]
    env.reset(seed=int(ep_seed), options=dict(task_info=dict(init_ij=start, goal_ij=goal)))
    maze_env = env.unwrapped
    xy = [maze_env.get_xy().copy()]
    goals, actions, reached = [np.asarray(maze_env.cur_goal_xy, dtype=np.float64)], [], 0
    for _ in range(steps):
        action = expert_action(subgoals, xy[-1], maze_env.cur_goal_xy) + rng.normal(0.0, noise, 2)
        action = np.clip(action, -1.0, 1.0)
        _, _, _, _, info = env.step(action)
        if info["success"]:
            reached += 1
            maze_env.set_goal(vertex[rng.integers(len(vertex))])  # jittered by the wrapper's generator
        xy.append(maze_env.get_xy().copy())
        goals.append(np.asarray(maze_env.cur_goal_xy, dtype=np.float64))
        actions.append(action)
    return np.asarray(xy), np.asarray(actions, dtype=np.float32), np.asarray(goals), reached


def _buffer(idx: int, seed, xy: np.ndarray, actions: np.ndarray, goals: np.ndarray, with_goal: bool) -> EpisodeBuffer:
    """A Minari episode; reward 1 where the step ended within the success distance of that step's goal."""
    T = len(actions)
    rewards = (np.linalg.norm(xy[1:] - goals[:-1], axis=-1) <= SUCCESS_DISTANCE).astype(np.float64)
    state = np.concatenate([xy, goals], axis=-1) if with_goal else xy
    obs = {"observation": state, "achieved_goal": xy.copy(), "desired_goal": goals}
    return EpisodeBuffer(id=idx, seed=seed, observations={k: v.astype(np.float64) for k, v in obs.items()},
                         actions=actions.astype(np.float32), rewards=rewards, terminations=np.zeros(T, bool),
                         truncations=np.arange(T) == T - 1, infos={})


def collect_navigate_episodes(name: str, episodes: int, seed: int, noise: float = DATA_NOISE,
                              steps: int = EPISODE_STEPS, workers: int | None = None, progress: bool = True):
    """Run the noisy expert for `episodes` episodes of `steps` steps across `workers` processes; returns (Minari
    episode buffers, goals reached per episode)."""
    maze, with_goal = maze_of(name), goal_in_state(name)
    workers = max(1, min(workers or os.cpu_count() or 1, episodes))
    jobs = [(maze, seed + i, noise, steps) for i in range(episodes)]
    bar = tqdm(total=episodes, desc=f"collect pointmaze-{maze}-navigate", unit="ep", disable=not progress,
               mininterval=1.0)
    buffers, reached = [], []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    results = map(_navigate_episode, jobs) if pool is None else \
        pool.map(_navigate_episode, jobs, chunksize=max(1, min(8, episodes // (4 * workers))))
    try:
        for i, (xy, act, goals, n) in enumerate(results):
            buffers.append(_buffer(i, seed + i, xy, act, goals, with_goal))
            reached.append(n)
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return buffers, np.asarray(reached)


def load_navigate_npz(path: str, with_goal: bool = False) -> list:
    """Minari episode buffers from an OGBench navigate `.npz` file (`observations` [N, 2], `actions` [N, 2],
    `terminals`). The files store no goal: `desired_goal` is where the episode ends (a hindsight goal)."""
    with np.load(path) as data:
        missing = {"observations", "actions", "terminals"} - set(data.files)
        if missing:
            raise ValueError(f"{path} is not an OGBench dataset: it lacks {sorted(missing)}")
        obs, act, term = (np.asarray(data[k], dtype=np.float64) for k in ("observations", "actions", "terminals"))
    if obs.ndim != 2 or obs.shape[1] != 2 or act.shape != (len(obs), 2):
        raise ValueError(f"{path}: observations {obs.shape} / actions {act.shape} are not a state-based pointmaze "
                         f"navigate file (need [N, 2] and [N, 2])")
    if not (np.isfinite(obs).all() and np.isfinite(act).all()):
        raise ValueError(f"{path} holds NaN or inf values")
    ends = list(np.flatnonzero(term.astype(bool)))
    if not ends or ends[-1] != len(obs) - 1:
        ends.append(len(obs) - 1)
    buffers, start = [], 0
    for end in ends:
        xy, a = obs[start:end + 1], act[start:end]  # the file stores no final observation: drop the last action
        if len(a) >= 2:
            buffers.append(_buffer(len(buffers), None, xy, a, np.repeat(xy[-1:], len(xy), axis=0), with_goal))
        start = end + 1
    if not buffers:
        raise ValueError(f"{path} holds no episode of at least 3 steps")
    return buffers


def default_dataset_id(name: str, episodes: int | None = None, npz: str | None = None) -> str:
    """'ogbench-pointmaze-giant' -> 'dfplan/ogbench/pointmaze-giant-navigate-v0' (other sizes: '...-300ep-v0'; an
    imported file: '...-<file stem>-v0'; a `-goal` task: '...-navigate-goal-...')."""
    base = f"{NAMESPACE}/pointmaze-{maze_of(name)}-navigate" + ("-goal" if goal_in_state(name) else "")
    if npz is not None:
        return f"{base}-{os.path.splitext(os.path.basename(str(npz)))[0].replace('.', '-')}-v0"
    return base + ("" if episodes in (None, DEFAULT_EPISODES) else f"-{episodes}ep") + "-v0"


def expert_success(name: str, episodes: int = 25, seed: int = 0) -> np.ndarray:
    """Success (0/1) of the noise-free expert on evaluation episodes `seed ..` (task `1 + seed % 5`)."""
    env = make_navigate_env(name)
    expert = NavigateExpertController(name)
    wins = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        won = False
        for _ in range(env.spec.max_episode_steps):
            obs, _, _, _, info = env.step(expert.act(obs))
            won |= bool(info["success"])
        wins.append(won)
    env.close()
    return np.asarray(wins, dtype=float)


def generate_navigate_dataset(name: str, episodes: int = DEFAULT_EPISODES, seed: int = 0,
                              dataset_id: str | None = None, overwrite: bool = False, noise: float = DATA_NOISE,
                              workers: int | None = None, npz: str | None = None, progress: bool = True,
                              ref_episodes: int = 25):
    """Generate (or, with `npz`, import) and atomically write a navigate dataset; returns it loaded through Minari.
    Reference scores are success rates in percent: 0 (min) and the noise-free expert's (max)."""
    maze = maze_of(name)
    dataset_id = dataset_id or default_dataset_id(name, episodes, npz)
    claim_dataset_id(dataset_id, overwrite)
    t0 = time.perf_counter()
    if npz is not None:
        buffers, reached = load_navigate_npz(npz, goal_in_state(name)), None
        algorithm = f"imported from {os.path.basename(npz)} (hindsight goal: each episode's end)"
    else:
        buffers, reached = collect_navigate_episodes(name, episodes, seed, noise=noise, workers=workers,
                                                     progress=progress)
        algorithm = f"ogbench-navigate-expert(noise={noise})"
    ref_max = 100.0 * float(expert_success(maze, ref_episodes, seed=seed).mean())
    env = make_navigate_env(name)
    try:
        desc = (f"OGBench pointmaze-{maze}-navigate data ({len(buffers)} episodes"
                + (f" of {EPISODE_STEPS} steps, seeds {seed}..{seed + episodes - 1}; the expert reached "
                   f"{reached.mean():.1f} goals per episode" if reached is not None else "")
                + "); generated by dfplan.")
        dataset = write_dataset(dataset_id, buffers, env, env.spec, algorithm_name=algorithm, ref_min_score=0.0,
                                ref_max_score=ref_max, num_episodes_average_score=ref_episodes,
                                code_permalink="dfplan.envs.ogbench_maze.generate_navigate_dataset", description=desc)
    finally:
        env.close()
    dataset.generation_seconds = time.perf_counter() - t0
    return dataset
