"""Minari episodes -> continuous runs of (observations, actions) arrays.

Works with any Minari dataset whose observations are a flat Box or a goal-conditioned dict
(the "observation" entry is used). Consecutive episodes that continue one another (the next one starts
where the last one ended, as in the PointMaze recipe that cuts one long run at every reached goal) are
chained into one run, detected from the data rather than assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import minari
import numpy as np

from dfplan.envs.recipes import NAMESPACE, datasets_root, recover_dataset  # dfplan.envs registers PointMaze quietly
from dfplan.errors import UserError


class DatasetNotFoundError(UserError, FileNotFoundError):
    pass


@dataclass(frozen=True)
class Trajectory:
    """A continuous stretch of experience: `obs` has one more row than `actions`."""

    obs: np.ndarray  # [T+1, Ds]
    actions: np.ndarray  # [T, Da]
    n_episodes: int

    def __len__(self) -> int:
        return len(self.actions)


def hint_for(dataset_id: str) -> str:
    if dataset_id.startswith(NAMESPACE + "/"):
        maze = dataset_id.removeprefix(NAMESPACE + "/").rsplit("-v", 1)[0]
        return f"make it with: dfplan-data env=pointmaze-{maze}" if "-dwell" not in maze else \
            f"make it with: dfplan-data env=pointmaze-{maze.split('-dwell')[0]} dwell={maze.split('-dwell')[1]}"
    return "check MINARI_DATASETS_PATH, or make one of ours with: dfplan-data env=<task>"


def load_minari(dataset_id: str):
    recover_dataset(dataset_id)  # a write killed between its two renames: put the dataset back in place first
    try:
        return minari.load_dataset(dataset_id)
    except (FileNotFoundError, ValueError, KeyError, OSError) as err:
        raise DatasetNotFoundError(
            f"cannot load Minari dataset {dataset_id!r} from {datasets_root()} ({type(err).__name__}: {err}); "
            + hint_for(dataset_id)
        ) from err


def _flat_obs(observations) -> np.ndarray:
    if isinstance(observations, dict):
        if "observation" not in observations:
            raise ValueError(f"dict observations need an 'observation' key, got {sorted(observations)}")
        observations = observations["observation"]
    return np.asarray(observations, dtype=np.float32).reshape(len(observations), -1)


def episodes_as_arrays(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """(obs [T+1, Ds], actions [T, Da]) for every episode, checked for NaNs and shape."""
    out = []
    try:
        episodes = list(dataset.iterate_episodes())
    except (OSError, KeyError, ValueError) as err:
        dataset_id = dataset.spec.dataset_id
        raise DatasetNotFoundError(
            f"dataset {dataset_id!r} at {dataset.spec.data_path} is corrupt or unreadable "
            f"({type(err).__name__}: {err}); "
            + hint_for(dataset_id) + " overwrite=true"
        ) from err
    for ep in episodes:
        obs, act = _flat_obs(ep.observations), np.asarray(ep.actions, dtype=np.float32).reshape(len(ep.actions), -1)
        if len(obs) != len(act) + 1:
            raise ValueError(f"episode {ep.id}: expected {len(act) + 1} observations for {len(act)} actions, "
                             f"got {len(obs)}")
        if not (np.isfinite(obs).all() and np.isfinite(act).all()):
            raise ValueError(f"episode {ep.id} holds NaN or inf values; the dataset is corrupt, regenerate it")
        out.append((obs, act))
    if not out:
        raise ValueError("the dataset has no episodes")
    return out


def chain_episodes(episodes, atol: float = 1e-6) -> list[Trajectory]:
    """Join episodes whose first observation equals the previous episode's last one."""
    runs: list[Trajectory] = []
    obs_parts, act_parts, count = [], [], 0
    for obs, act in episodes:
        continues = obs_parts and np.allclose(obs[0], obs_parts[-1][-1], atol=atol)
        if obs_parts and not continues:
            runs.append(_join(obs_parts, act_parts, count))
            obs_parts, act_parts, count = [], [], 0
        obs_parts.append(obs)
        act_parts.append(act)
        count += 1
    runs.append(_join(obs_parts, act_parts, count))
    return runs


def _join(obs_parts, act_parts, count) -> Trajectory:
    # each continuing episode repeats the previous last observation as its first row: drop the repeat
    obs = np.concatenate([obs_parts[0]] + [o[1:] for o in obs_parts[1:]])
    return Trajectory(obs=obs, actions=np.concatenate(act_parts), n_episodes=count)


def split_episodes(episodes: list, val_fraction: float, seed: int = 0) -> tuple[list, list]:
    """Split by episode: a contiguous block of episodes (so chains stay intact) is held out for validation."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(len(episodes) * val_fraction))
    if n_val == 0:
        return list(episodes), []
    start = np.random.default_rng(seed).integers(0, len(episodes) - n_val + 1)
    return episodes[:start] + episodes[start + n_val:], episodes[start:start + n_val]
