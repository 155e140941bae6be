"""mp4 of one controlled episode (MuJoCo offscreen rendering: set MUJOCO_GL=egl or osmesa on a headless machine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfplan.errors import UserError


def record_video(controller, task, goal: str, seed: int, path: str | Path, fps: int = 30) -> Path:
    """Run one episode of `task` (env seed `seed`) with `controller` and write it as an mp4."""
    try:
        import imageio.v2 as imageio
    except ImportError as err:
        raise UserError("videos need imageio with ffmpeg: pip install 'dfplan[video]'") from err
    env = task.make_env(goal=goal, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    if hasattr(controller, "max_episode_steps"):
        controller.max_episode_steps = env.spec.max_episode_steps
    controller.reset(seed=seed)
    frames = [env.render()]
    for _ in range(env.spec.max_episode_steps):
        batch = {k: v[None] for k, v in obs.items()}
        obs, *_ = env.step(controller.act(batch)[0])
        frames.append(env.render())
    env.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, [np.asarray(f) for f in frames], fps=fps)
    return path
