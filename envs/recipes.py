"""Dataset recipes: PointMaze datasets in Minari format, following D4RL/pointmaze/*-v2.

The recipe: one continuous run of `steps` env steps in a `continuing_task=True, reset_target=True` maze,
driven by the waypoint expert with Gaussian action noise (sigma 0.5, clipped to [-1, 1]). Each time the goal
is reached the run is cut into a new episode (the env has already drawn the next goal), so consecutive
episodes continue one another. Reference scores come from the eval env (`reset_target=False`, the D4RL goal
cell): a uniform random policy (min) and the noise-free waypoint expert (max).

Fixed relative to the published generation script: the action noise is seeded (it used the global numpy
RNG, so datasets were not reproducible), `max_episode_steps` is an int, the run is written with
`EpisodeBuffer`s (Minari's `DataCollector` needs jax), and the write is atomic.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

from .experts import WaypointExpert
from .maze import MazeLayout, MazeSpec, get_maze
from .pointmaze import make_env

NAMESPACE = "dfplan/pointmaze"


def default_dataset_id(maze_name: str, dwell: int = 0) -> str:
    """Our dataset id for a maze, e.g. 'pointmaze-umaze' -> 'dfplan/pointmaze/umaze-v0' ('umaze-dwell100-v0')."""
    return f"{NAMESPACE}/{maze_name.removeprefix('pointmaze-')}" + (f"-dwell{dwell}" if dwell else "") + "-v0"


def datasets_root() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))


def dataset_exists(dataset_id: str) -> bool:
    recover_dataset(dataset_id)
    return _complete(datasets_root() / dataset_id)


# --- atomic dataset writes -----------------------------------------------------------------------------------
# A dataset is written into a staging folder under the datasets root (same filesystem, so renames are atomic),
# `.dfplan-staging-{pid}-XXXX`, named after its writer so that a later write can tell when that writer is dead.
#
# Invariant: at every moment one complete copy of each dataset id can be found. It is in its place, root/<id>,
# except between the two renames of `install_staged_dataset`, and then it is in the staging folder, whose
# `staged.json` (written before the first rename) names the id: the new copy at staging/<id>, the old one at
# staging/replaced. `recover_dataset` (run by `dataset_exists`, `load_minari` and every write) finishes a swap
# that a kill cut in two by moving the new copy into place; `clean_stale_staging` does that before it deletes a
# dead writer's folder, so a folder that may hold the only copy is never deleted.
STAGING_PREFIX = ".dfplan-staging-"
_MANIFEST = "staged.json"
_OWNER = re.compile(re.escape(STAGING_PREFIX) + r"(\d+)-")


def _complete(folder: Path) -> bool:
    return (folder / "data" / "metadata.json").is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _owner(staging: Path) -> int | None:
    """The pid in a staging folder's name; None for folders named by older versions (no pid)."""
    match = _OWNER.match(staging.name)
    return int(match.group(1)) if match else None


def _manifest(staging: Path) -> dict | None:
    try:
        data = json.loads((staging / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("dataset_id"), str) else None


def new_staging_dir(root: Path | None = None) -> Path:
    """A fresh staging folder for one dataset write, named after this process."""
    root = Path(root or datasets_root())
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=root))


def install_staged_dataset(staging: Path, dataset_id: str) -> Path:
    """Move the complete dataset written at staging/<dataset_id> into its place, replacing any old one (which
    stays reachable as staging/replaced until the new one is in place). The caller removes `staging` after."""
    final_dir = staging.parent / dataset_id
    if not _complete(staging / dataset_id):
        raise FileNotFoundError(f"no complete dataset {dataset_id!r} staged in {staging}")
    tmp = staging / f".{_MANIFEST}.tmp"
    tmp.write_text(json.dumps({"dataset_id": dataset_id, "pid": os.getpid()}))
    os.replace(tmp, staging / _MANIFEST)  # from here on, a kill leaves a swap that recover_dataset can finish
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    if final_dir.exists():
        os.replace(final_dir, staging / "replaced")
    os.replace(staging / dataset_id, final_dir)
    return final_dir


def _recover_from(staging: Path, dataset_id: str, final_dir: Path) -> bool:
    """Move the new copy of `dataset_id` staged in `staging` into its place if a swap was cut between its renames."""
    manifest = _manifest(staging)
    if manifest is not None:
        if manifest["dataset_id"] != dataset_id:
            return False
    elif not ((staging / "replaced").is_dir() and _owner(staging) is None):
        return False  # no manifest: the write never reached its swap (older versions: a `replaced` folder shows it did)
    new = staging / dataset_id
    if not _complete(new):
        # the swap finished and root/<id> was removed since: staging/replaced is an old copy, not brought back
        return False
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(new, final_dir)
    except OSError:  # another process recovered it (or claimed the folder) first
        return final_dir.exists()
    return True


def recover_dataset(dataset_id: str, root: Path | None = None) -> bool:
    """If root/<dataset_id> is missing because a writer was killed between the two renames of
    `install_staged_dataset`, move its complete new copy into place; True if it did."""
    root = Path(root or datasets_root())
    final_dir = root / dataset_id
    if final_dir.exists() or not root.is_dir():
        return False
    for staging in sorted(root.glob(STAGING_PREFIX + "*"), key=lambda p: p.name):
        owner = _owner(staging)
        if owner is not None and (owner == os.getpid() or _pid_alive(owner)):
            continue  # a live writer: it finishes its own swap
        if staging.is_dir() and _recover_from(staging, dataset_id, final_dir):
            return True
    return False


def clean_stale_staging(root: Path | None = None) -> list[Path]:
    """Delete the staging folders of writers that are dead (killed mid-write), after finishing any swap they left
    half done. Folders of live writers, and older ones without a pid in their name, are left alone."""
    root = Path(root or datasets_root())
    removed = []
    for staging in list(root.glob(STAGING_PREFIX + "*")) if root.is_dir() else []:
        owner = _owner(staging)
        if owner is None or owner == os.getpid() or _pid_alive(owner):
            continue
        # claim it first (an atomic rename to a name with our pid), so no other process recovers from it or
        # deletes it while we do
        claimed = root / f"{STAGING_PREFIX}{os.getpid()}-claimed-{staging.name.removeprefix(STAGING_PREFIX)}"
        try:
            os.rename(staging, claimed)
        except OSError:
            continue
        manifest = _manifest(claimed)
        if manifest is not None:
            final_dir = root / manifest["dataset_id"]
            if not final_dir.exists():
                _recover_from(claimed, manifest["dataset_id"], final_dir)
        shutil.rmtree(claimed, ignore_errors=True)
        removed.append(staging)
    return removed


@contextmanager
def _minari_root(path: Path):
    """Point Minari at another datasets folder for the duration (it reads the env var on every call)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def collect_pointmaze_episodes(spec: MazeSpec, steps: int, seed: int, noise: float = 0.5, dwell: int = 0,
                               progress: bool = True):
    """Run the noisy waypoint expert for `steps` env steps; return (episode buffers, the data env).

    `dwell` > 0 (not in D4RL): after reaching a goal the expert keeps steering to it for a uniformly drawn
    0..dwell more steps before heading to the next one, so the data shows arriving and staying; the episode
    is cut when the dwell ends. `dwell=0` is the D4RL recipe, bit for bit.
    """
    env = gym.make("PointMaze_UMaze-v3", maze_map=[list(r) for r in spec.maze_map], continuing_task=True,
                   reset_target=True, max_episode_steps=int(steps))
    expert = WaypointExpert(MazeLayout(spec.maze_map, env.unwrapped.maze.maze_size_scaling))
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)

    dwell_rng = np.random.default_rng([seed, 1])  # its own stream: dwell=0 leaves the noise draws unchanged
    held_goal, dwell_left = None, 0
    episodes: list[EpisodeBuffer] = []
    obs, _ = env.reset(seed=seed)
    buf = _new_buffer(len(episodes), seed, obs)
    for step in tqdm(range(steps), desc=f"collect {spec.name}", unit="step", disable=not progress, mininterval=1.0):
        target = obs if dwell_left == 0 else {**obs, "desired_goal": held_goal}
        action = np.clip(expert(target) + noise * rng.standard_normal(2), -1.0, 1.0).astype(np.float32)
        goal_before = obs["desired_goal"].copy()
        obs, reward, terminated, truncated, info = env.step(action)
        last = step == steps - 1
        dwell_ended = dwell_left == 1
        dwell_left = max(dwell_left - 1, 0)
        reached = bool(info["success"])  # the env has already drawn the next goal
        if reached and dwell > 0 and dwell_left == 0:
            held_goal, dwell_left = goal_before, int(dwell_rng.integers(0, dwell + 1))
        cut = (reached and dwell_left == 0) or dwell_ended or last
        _append(buf, obs, action, reward, terminated, cut)
        if cut:
            episodes.append(_finish(buf))
            buf = _new_buffer(len(episodes), None, obs)
    return episodes, env


def _new_buffer(idx: int, seed, obs) -> dict:
    return {"id": idx, "seed": seed, "obs": [obs], "act": [], "rew": [], "term": [], "trunc": []}


def _append(buf, obs, action, reward, terminated, truncated):
    buf["obs"].append(obs)
    buf["act"].append(action)
    buf["rew"].append(float(reward))
    buf["term"].append(bool(terminated))
    buf["trunc"].append(bool(truncated))


def _finish(buf) -> EpisodeBuffer:
    obs = {k: np.stack([o[k] for o in buf["obs"]]).astype(np.float64) for k in buf["obs"][0]}
    return EpisodeBuffer(
        id=buf["id"], seed=buf["seed"], observations=obs, actions=np.stack(buf["act"]),
        rewards=np.asarray(buf["rew"], dtype=np.float64), terminations=np.asarray(buf["term"]),
        truncations=np.asarray(buf["trunc"]), infos={},
    )


def reference_scores(spec: MazeSpec, episodes: int = 100, seed: int = 0) -> tuple[float, float]:
    """Mean return of a uniform random policy and of the waypoint expert on the eval env (fixed goal)."""
    scores = []
    for policy in ("random", "expert"):
        env = make_env(spec, goal="fixed")
        expert = WaypointExpert(MazeLayout(spec.maze_map, env.unwrapped.maze.maze_size_scaling))
        env.action_space.seed(seed)
        total = 0.0
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            done = False
            while not done:
                action = env.action_space.sample() if policy == "random" else expert(obs)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += reward
                done = terminated or truncated
        env.close()
        scores.append(total / episodes)
    return scores[0], scores[1]


def claim_dataset_id(dataset_id: str, overwrite: bool) -> Path:
    """Before the (slow) collection: finish or clean up interrupted writes, and refuse an existing id unless
    `overwrite`. Returns the datasets root."""
    root = datasets_root()
    clean_stale_staging(root)
    recover_dataset(dataset_id, root)
    if (root / dataset_id).exists() and not overwrite:
        raise FileExistsError(f"dataset {dataset_id!r} already exists at {root / dataset_id}; pass overwrite=true to "
                              f"replace it")
    return root


def write_dataset(dataset_id: str, buffers: list, env, eval_env_spec, **metadata) -> minari.MinariDataset:
    """Write episode buffers as a Minari dataset through a staging folder on the same filesystem, then swap it in
    (`install_staged_dataset`: a kill at any moment leaves one complete copy findable). `metadata`: the keyword
    arguments of `minari.create_dataset_from_buffers` (ref scores, algorithm name, description, ...)."""
    staging = new_staging_dir(datasets_root())
    try:
        with _minari_root(staging):
            minari.create_dataset_from_buffers(dataset_id=dataset_id, buffer=buffers, env=env, eval_env=eval_env_spec,
                                               author="dfplan", author_email="dfplan@users.noreply.invalid",
                                               **metadata)
        install_staged_dataset(staging, dataset_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return minari.load_dataset(dataset_id)


def generate_pointmaze_dataset(maze: str | MazeSpec = "pointmaze-umaze", steps: int = 1_000_000, seed: int = 123,
                               dataset_id: str | None = None, overwrite: bool = False, ref_episodes: int = 100,
                               dwell: int = 0, progress: bool = True) -> minari.MinariDataset:
    """Generate and atomically write a PointMaze dataset; returns it loaded through `minari.load_dataset`."""
    spec = get_maze(maze) if isinstance(maze, str) else maze
    dataset_id = dataset_id or default_dataset_id(spec.name, dwell)
    if steps < 1 or dwell < 0:
        raise ValueError(f"steps must be >= 1 and dwell >= 0, got steps={steps} dwell={dwell}")
    claim_dataset_id(dataset_id, overwrite)
    t0 = time.perf_counter()
    episodes, env = collect_pointmaze_episodes(spec, steps, seed, dwell=dwell, progress=progress)
    ref_min, ref_max = reference_scores(spec, episodes=ref_episodes, seed=seed)
    eval_env = make_env(spec, goal="fixed")
    try:
        dataset = write_dataset(
            dataset_id, episodes, env, eval_env.spec,
            algorithm_name="waypoint-expert+gaussian-noise(0.5)" + (f"+dwell(0..{dwell})" if dwell else ""),
            ref_min_score=float(ref_min), ref_max_score=float(ref_max), num_episodes_average_score=ref_episodes,
            code_permalink="dfplan.envs.recipes.generate_pointmaze_dataset",
            description=f"{spec.name}: D4RL pointmaze-v2 recipe" + (f" with dwell 0..{dwell} steps at each goal"
                                                                   if dwell else "")
            + f", {steps} steps, seed {seed}, generated by dfplan-data.")
    finally:
        env.close()
        eval_env.close()
    dataset.generation_seconds = time.perf_counter() - t0
    return dataset
