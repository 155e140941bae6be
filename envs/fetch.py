"""Fetch manipulation tasks (Push, PickAndPlace): env factory, scripted experts and Minari dataset recipes.

Env facts (gymnasium_robotics 1.4, `envs/fetch/`, the v4 envs; v3 has a start-state bug):
- dict obs: `observation` 25-D = grip_pos 0:3, object_pos 3:6, object_rel_pos 6:9 (object - grip),
  gripper_state 9:11 (finger joints), object_rot 11:14, object_velp 14:17, object_velr 17:20, grip_velp 20:23,
  gripper_vel 23:25; `achieved_goal` = object position, `desired_goal` = target position.
- action 4-D in [-1, 1]: gripper dx, dy, dz (times 0.05 m, added to the current gripper position through the
  mocap weld, so a full step moves about 0.03 m) and the finger command (+1 open, -1 close; ignored in Push,
  whose fingers are locked closed).
- 50 steps per episode, truncated only (never terminated); `info["is_success"]` is a float32 0/1: object within
  0.05 m (3-D) of the goal. Push goals lie on the table; PickAndPlace goals are in the air half of the time.

The recipe (`collect_fetch_episodes`): one 50-step episode per env seed `seed + i`, the scripted expert plus
Gaussian action noise; a fraction of episodes is deliberately bad (a decoy goal for the first half, or heavy
noise) so the data holds failures and detours like real offline data.
"""

from __future__ import annotations

import contextlib
import io
import time

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

from .recipes import _append, _finish, _new_buffer, claim_dataset_id, write_dataset

FETCH_TASKS = {"fetch-push": "FetchPush-v4", "fetch-pickandplace": "FetchPickAndPlace-v4"}
NAMESPACE = "dfplan/fetch"
DEFAULT_EPISODES = 2000

# Geometry (m): the block is a 0.05 cube resting with its centre 0.025 above the table; the closed fingers
# reach about 0.015 either side of the grip site.
BLOCK_HALF = 0.025
TABLE_Z = 0.40  # table top; a block centre below it has fallen off


def _register() -> None:
    with contextlib.redirect_stderr(io.StringIO()):  # the import prints an Adroit versioning notice
        import gymnasium_robotics
    gym.register_envs(gymnasium_robotics)


class GoalInObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Appends `desired_goal` to `observation` (25 -> 28 dims): a model that reads only the observation (DF, Diffuser,
    BC) is then goal-conditioned by its input. Every other key of the dict observation is unchanged."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        spaces = dict(env.observation_space.spaces)
        obs, goal = spaces["observation"], spaces["desired_goal"]
        spaces["observation"] = gym.spaces.Box(np.concatenate([obs.low, goal.low]),
                                               np.concatenate([obs.high, goal.high]), dtype=obs.dtype)
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, obs: dict) -> dict:
        return {**obs, "observation": np.concatenate([obs["observation"], obs["desired_goal"]])}


def make_fetch_env(name: str, max_episode_steps: int | None = None, render_mode: str | None = None) -> gym.Env:
    """A Fetch env by our name ('fetch-push', 'fetch-pickandplace') or its Gymnasium id, with the goal appended to
    the observation (`GoalInObservation`: 28-D)."""
    env_id = FETCH_TASKS.get(name, name)
    if env_id not in FETCH_TASKS.values():
        raise ValueError(f"unknown Fetch task {name!r}; known: {sorted(FETCH_TASKS)}")
    _register()
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
    return GoalInObservation(gym.make(env_id, render_mode=render_mode, **kwargs))


def _task(name: str) -> str:
    """Our short task name for a name or Gymnasium id."""
    for short, env_id in FETCH_TASKS.items():
        if name in (short, env_id):
            return short
    raise ValueError(f"unknown Fetch task {name!r}; known: {sorted(FETCH_TASKS)}")


def _action(xyz: np.ndarray, fingers: float) -> np.ndarray:
    return np.clip(np.append(xyz, fingers), -1.0, 1.0).astype(np.float32)


class PickAndPlaceExpert:
    """Grasp the block from above and carry it to the goal; stateless, so it re-grasps a dropped block.

    The phase follows from the observation alone: fingers shut on the block -> carry it to the goal; at the
    block, or fingers still closing around it -> close; otherwise -> approach with open fingers, flying
    `hover` above the block while off to the side and sinking onto it as the gripper lines up (smoothly, so
    action noise does not make it bob between hovering and descending).
    """

    def __init__(self, gain: float = 10.0, hover: float = 0.06, align_tol: float = 0.01, grasp_tol: float = 0.01,
                 lift: float = 0.03):
        self.gain, self.hover, self.align_tol, self.grasp_tol, self.lift = gain, hover, align_tol, grasp_tol, lift

    def reset(self) -> None:
        """Nothing to forget: the expert keeps no state."""

    def __call__(self, obs) -> np.ndarray:
        o = np.asarray(obs["observation"], dtype=float)
        goal = np.asarray(obs["desired_goal"], dtype=float)
        block, rel, width, finger_vel = o[3:6], o[6:9], o[9] + o[10], o[23] + o[24]
        xy_err = np.linalg.norm(rel[:2])
        near = xy_err < 2 * self.align_tol and abs(rel[2]) < 2 * self.grasp_tol
        if near and 0.03 < width < 2 * BLOCK_HALF + 0.01:  # the block is between the shut fingers
            return _action(self.gain * self._carry(block, goal), -1.0)
        closing = near and finger_vel < -0.002
        if closing or (xy_err < 1.5 * self.align_tol and abs(rel[2]) < self.grasp_tol):
            return _action(self.gain * rel, -1.0)
        # Height above the block to aim for: `hover` when off to the side, the block itself when lined up.
        up = self.hover * np.clip((xy_err - self.align_tol) / (2 * self.align_tol), 0.0, 1.0)
        return _action(self.gain * (rel + np.array([0.0, 0.0, up])), 1.0)

    def _carry(self, block: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Block displacement toward the goal, kept `lift` higher while far so it does not drag on the table."""
        target = goal.copy()
        if np.linalg.norm(goal[:2] - block[:2]) > 0.02:
            target[2] += self.lift
        return target - block


class PushExpert:
    """Push the block along the block->goal line with the (locked) fingers; stateless.

    Behind the block, low and on the line -> push toward the goal; behind but off the line -> slide to the
    pre-push point without touching it; elsewhere -> rise above the block, fly over to the pre-push point and
    descend. Holds still once the block is within `done_tol` of the goal.
    """

    def __init__(self, gain: float = 15.0, contact: float = 0.045, pre: float = 0.065, align_tol: float = 0.02,
                 safe: float = 0.07, done_tol: float = 0.02, push_speed: float = 0.6, push_dz: float = -0.008,
                 advance: float = 0.05, rest: float = 0.07):
        self.gain, self.contact, self.pre, self.align_tol = gain, contact, pre, align_tol
        self.safe, self.done_tol, self.push_speed, self.push_dz = safe, done_tol, push_speed, push_dz
        self.advance, self.rest = advance, rest

    def reset(self) -> None:
        """Nothing to forget: the expert keeps no state."""

    def __call__(self, obs) -> np.ndarray:
        o = np.asarray(obs["observation"], dtype=float)
        goal = np.asarray(obs["desired_goal"], dtype=float)
        grip, block = o[0:3], o[3:6]
        to_goal = goal[:2] - block[:2]
        dist = np.linalg.norm(to_goal)
        rel = grip[:2] - block[:2]
        if block[2] < TABLE_Z:  # the block fell off the table: nothing left to do
            return _action(np.zeros(3), -1.0)
        if dist < self.done_tol:  # done: back off a little and stay there, clear of the block
            away = rel / max(np.linalg.norm(rel), 1e-9)
            rest = np.append(block[:2] + self.rest * away, block[2] + 0.03)
            return _action(self.gain * (rest - grip), -1.0)
        u = to_goal / dist
        s = rel @ u  # along the push line; negative = behind the block
        lateral = np.linalg.norm(rel - s * u)
        low = grip[2] < block[2] + 0.02
        push_z = block[2] + self.push_dz  # low contact: a high push tips the block over
        if low and s < -BLOCK_HALF and lateral < self.align_tol:  # in contact position: push
            # Aim at the contact point behind the block on the *current* block->goal line, plus a step forward:
            # as the block drifts, the line turns and the contact point slides to the side that steers it back.
            advance = min(dist, self.advance)
            target = np.append(block[:2] + (advance - self.contact) * u, push_z)
            xyz = self.gain * (target - grip)
            return _action(xyz * min(1.0, self.push_speed / max(np.linalg.norm(xyz), 1e-9)), -1.0)
        # Low and behind the block's back face: slide to the pre-push point without touching the block.
        clear_behind = s < -self.pre + 0.01 or (s < -BLOCK_HALF - 0.005 and lateral < 2 * self.align_tol)
        if low and clear_behind:
            target = np.append(block[:2] - self.pre * u, push_z)
        else:
            target = self._over_the_top(grip, block, block[:2] - self.pre * u)
        return _action(self.gain * (target - grip), -1.0)

    def _over_the_top(self, grip: np.ndarray, block: np.ndarray, pre_xy: np.ndarray) -> np.ndarray:
        """Rise first, cross above the block to the pre-push point, then descend there."""
        safe_z = block[2] + self.safe
        if np.linalg.norm(grip[:2] - pre_xy) < 0.015:
            return np.append(pre_xy, block[2])
        if grip[2] < safe_z - 0.02:
            return np.array([grip[0], grip[1], safe_z])
        return np.append(pre_xy, safe_z)


EXPERTS = {"fetch-push": PushExpert, "fetch-pickandplace": PickAndPlaceExpert}


def make_expert(name: str):
    """The scripted expert for a task (our name or Gymnasium id), with its tuned defaults."""
    return EXPERTS[_task(name)]()


def default_dataset_id(name: str) -> str:
    """Our dataset id for a task, e.g. 'fetch-push' -> 'dfplan/fetch/push-v0'."""
    return f"{NAMESPACE}/{_task(name).removeprefix('fetch-')}-v0"


def _decoy_goal(rng: np.random.Generator, obs, in_air: bool) -> np.ndarray:
    """A wrong goal drawn like the env draws goals: the true one shifted up to 0.15 m on the table, and for
    PickAndPlace lifted up to 0.45 m half of the time."""
    goal = np.asarray(obs["desired_goal"], dtype=float).copy()
    goal[:2] += rng.uniform(-0.15, 0.15, size=2)
    goal[2] = obs["achieved_goal"][2]  # the block rests on the table at reset
    if in_air and rng.random() < 0.5:
        goal[2] += rng.uniform(0.0, 0.45)
    return goal


def _run_episode(env, expert, idx: int, ep_seed: int, rng: np.random.Generator, noise: float,
                 decoy_steps: int = 0, in_air: bool = False) -> tuple[EpisodeBuffer, bool]:
    """One episode of the noisy expert, which chases a decoy goal for the first `decoy_steps`; (buffer, success)."""
    obs, _ = env.reset(seed=ep_seed)
    expert.reset()
    decoy = _decoy_goal(rng, obs, in_air) if decoy_steps else None
    buf = _new_buffer(idx, ep_seed, obs)
    done, t, info = False, 0, {}
    while not done:
        seen = obs if t >= decoy_steps else {**obs, "desired_goal": decoy}
        action = np.clip(expert(seen) + noise * rng.standard_normal(4), -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        done, t = terminated or truncated, t + 1
        _append(buf, obs, action, reward, terminated, truncated)
    buf["trunc"][-1] = not buf["term"][-1]  # the episode ends here either way
    return _finish(buf), bool(info["is_success"])


def collect_fetch_episodes(name: str, episodes: int, seed: int, noise: float = 0.2,
                           suboptimal_fraction: float = 0.1, progress: bool = True):
    """Run the noisy scripted expert for `episodes` 50-step episodes; (episode buffers, the data env, success rate).

    Episode `i` resets the env with seed `seed + i`; all other randomness comes from one Generator seeded with
    `seed`, so the data is a pure function of the arguments. A `suboptimal_fraction` of episodes (drawn by that
    Generator) is deliberately bad, one of two kinds with equal odds: the expert heads for a decoy goal for the
    first half of the episode, or acts under heavy noise (sigma 1.0). The success rate is over all collected episodes
    (`info["is_success"]` at the last step), in [0, 1].
    """
    if episodes < 1 or noise < 0 or not 0.0 <= suboptimal_fraction <= 1.0:
        raise ValueError(f"need episodes >= 1, noise >= 0, 0 <= suboptimal_fraction <= 1; got {episodes}, {noise}, "
                         f"{suboptimal_fraction}")
    env = make_fetch_env(name)
    expert = make_expert(name)
    rng = np.random.default_rng(seed)
    horizon = env.spec.max_episode_steps
    in_air = _task(name) == "fetch-pickandplace"
    buffers: list[EpisodeBuffer] = []
    successes = []
    for i in tqdm(range(episodes), desc=f"collect {_task(name)}", unit="ep", disable=not progress, mininterval=1.0):
        ep_noise, decoy_steps = noise, 0
        if rng.random() < suboptimal_fraction:
            if rng.random() < 0.5:
                ep_noise = 1.0
            else:
                decoy_steps = horizon // 2
        buf, success = _run_episode(env, expert, i, seed + i, rng, ep_noise, decoy_steps, in_air)
        buffers.append(buf)
        successes.append(success)
    return buffers, env, float(np.mean(successes))


def fetch_reference_success(name: str, episodes: int = 100, seed: int = 0) -> tuple[float, float]:
    """Success rates in [0, 1] (at the last step) of a uniform random policy and of the noise-free expert,
    over env seeds `seed .. seed + episodes - 1`."""
    rates = []
    for policy in ("random", "expert"):
        env = make_fetch_env(name)
        expert = make_expert(name)
        env.action_space.seed(seed)
        wins = 0
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            expert.reset()
            done, info = False, {}
            while not done:
                action = env.action_space.sample() if policy == "random" else expert(obs)
                obs, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            wins += bool(info["is_success"])
        env.close()
        rates.append(wins / episodes)
    return rates[0], rates[1]


def generate_fetch_dataset(name: str, episodes: int = DEFAULT_EPISODES, seed: int = 123, dataset_id: str | None = None,
                           overwrite: bool = False, noise: float = 0.2, progress: bool = True,
                           suboptimal_fraction: float = 0.1, ref_episodes: int = 100) -> minari.MinariDataset:
    """Generate and atomically write a Fetch dataset; returns it loaded through `minari.load_dataset`.

    Reference scores are success rates in percent: a uniform random policy (min) and the noise-free expert
    (max), over `ref_episodes` env seeds from `seed`.
    """
    task = _task(name)
    dataset_id = dataset_id or default_dataset_id(task)
    claim_dataset_id(dataset_id, overwrite)
    t0 = time.perf_counter()
    buffers, env, data_success = collect_fetch_episodes(task, episodes, seed, noise=noise,
                                                        suboptimal_fraction=suboptimal_fraction, progress=progress)
    ref_min, ref_max = fetch_reference_success(task, episodes=ref_episodes, seed=seed)
    try:
        dataset = write_dataset(
            dataset_id, buffers, env, env.spec,
            algorithm_name=f"scripted-{task.removeprefix('fetch-')}-expert+gaussian-noise({noise})"
                           f"+{suboptimal_fraction:.0%}-suboptimal(decoy-goal|noise-1.0)",
            ref_min_score=100.0 * ref_min, ref_max_score=100.0 * ref_max, num_episodes_average_score=ref_episodes,
            code_permalink="dfplan.envs.fetch.generate_fetch_dataset",
            description=f"{FETCH_TASKS[task]} (goal appended to the observation): scripted expert with Gaussian "
                        f"action noise {noise}, {suboptimal_fraction:.0%} deliberately suboptimal episodes; {episodes} "
                        f"episodes of {env.spec.max_episode_steps} steps, env seeds {seed}..{seed + episodes - 1}; "
                        f"success at the last step {100 * data_success:.1f}%; generated by dfplan.")
    finally:
        env.close()
    dataset.generation_seconds = time.perf_counter() - t0
    dataset.data_success_rate = data_success
    return dataset
