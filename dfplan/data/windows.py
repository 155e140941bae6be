"""Training windows: fixed-length slices of continuous runs, with a mask where a slice runs past the end."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from dfplan.errors import UserError

from .episodes import Trajectory, chain_episodes, episodes_as_arrays, load_minari, split_episodes
from .normalizer import Normalizer


@dataclass
class Batch:
    """Normalized windows: `obs[:, 0]` is the start state; step t takes `actions[:, t]` from `obs[:, t]` to
    `obs[:, t+1]`."""

    obs: torch.Tensor  # [B, L+1, Ds]
    actions: torch.Tensor  # [B, L, Da]
    mask: torch.Tensor  # [B, L] bool: the step lies inside the run

    def to(self, device) -> "Batch":
        return Batch(self.obs.to(device), self.actions.to(device), self.mask.to(device))


class WindowSampler:
    """Samples windows of `length` env steps from runs; windows may start anywhere with >= `min_valid` real steps."""

    def __init__(self, runs: list[Trajectory], length: int, normalizer: Normalizer, min_valid: int = 1):
        if length < 1:
            raise ValueError(f"window length must be >= 1, got {length}")
        if not runs:
            raise ValueError("no runs to sample windows from")
        self.length, self.normalizer = length, normalizer
        self.obs = np.concatenate([r.obs for r in runs]).astype(np.float32)
        padded = [np.concatenate([r.actions, r.actions[-1:] * 0]) for r in runs]  # no action at a run's last obs
        self.actions = np.concatenate(padded).astype(np.float32)
        # per run: global index of its first observation and of its last one (no action is taken there)
        sizes = np.array([len(r.obs) for r in runs])
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        last = first + sizes - 1
        n_steps = sizes - 1
        starts = [np.arange(f, f + max(n - min_valid + 1, 0)) for f, n in zip(first, n_steps)]
        owner = [np.full(len(s), end) for s, end in zip(starts, last)]
        self.starts = np.concatenate(starts)
        self.run_end = np.concatenate(owner)  # global index of the last obs of each start's run
        if len(self.starts) == 0:
            raise ValueError("runs are too short for any window")

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, idx: np.ndarray) -> Batch:
        start, end = self.starts[idx][:, None], self.run_end[idx][:, None]
        steps = start + np.arange(self.length + 1)[None]  # observation indices
        valid_obs = steps <= end
        steps = np.minimum(steps, end)  # pad past the end by repeating the last observation
        obs = torch.from_numpy(self.obs[steps])
        act_idx = np.minimum(steps[:, :-1], end - 1)
        actions = torch.from_numpy(self.actions[act_idx])
        mask = torch.from_numpy(valid_obs[:, 1:])
        nz = self.normalizer
        return Batch(nz.norm_obs(obs), nz.norm_act(actions) * mask[..., None], mask)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return self.gather(rng.integers(0, len(self.starts), size=batch_size))


@dataclass
class DatasetSplits:
    train: list[Trajectory]
    val: list[Trajectory]
    normalizer: Normalizer
    obs_dim: int  # the state dims the runs keep (`state_dims`)
    act_dim: int
    n_episodes: int
    ref_scores: tuple[float | None, float | None] = (None, None)  # (random, expert) returns from the metadata
    env_obs_dim: int | None = None  # the dataset's whole observation (obs_dim when every dim is kept)

    def __post_init__(self):
        if self.env_obs_dim is None:
            self.env_obs_dim = self.obs_dim


def load_runs(dataset_id: str, val_fraction: float = 0.05, seed: int = 0, normalizer_mode: str = "gaussian",
              state_dims=None) -> DatasetSplits:
    """Load a Minari dataset, split by episode, chain continuing episodes, fit the normalizer on train.
    `state_dims`: keep only these observation dims (a model that plans part of the state); None = all."""
    dataset = load_minari(dataset_id)
    meta = dataset.storage.metadata
    episodes = episodes_as_arrays(dataset)
    full = episodes[0][0].shape[1]
    dims = list(range(full)) if state_dims is None else list(state_dims)
    if not dims or min(dims) < 0 or max(dims) >= full or len(set(dims)) != len(dims):
        raise UserError(f"state_dims={dims} must be distinct dims of the {full}-D observation")
    train_eps, val_eps = split_episodes(episodes, val_fraction, seed)
    train = [replace(r, obs=r.obs[:, dims]) for r in chain_episodes(train_eps)]  # chained on the whole observation
    val = [replace(r, obs=r.obs[:, dims]) for r in chain_episodes(val_eps)] if val_eps else []
    obs = np.concatenate([r.obs for r in train])
    act = np.concatenate([r.actions for r in train])
    return DatasetSplits(train, val, Normalizer.fit(obs, act, mode=normalizer_mode), obs.shape[1], act.shape[1],
                         len(episodes), (meta.get("ref_min_score"), meta.get("ref_max_score")), full)
