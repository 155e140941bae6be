"""A video of one controlled episode, as GIF (pillow) or MP4 (imageio with ffmpeg: pip install 'dfplan[video]'), by
the file's suffix.

source="drawn" (the default): drawn from the rollout with matplotlib by the task (`Task.animate`: a maze top-down
with the point's path and the plan being followed; manipulation: the gripper's and the objects' paths in metres);
needs no OpenGL. source="render": MuJoCo's own camera (needs OpenGL: on a headless machine MUJOCO_GL=egl or osmesa).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from dfplan.errors import UserError, check_choice
from dfplan.types import as_controller

SOURCES = ("drawn", "render")
FORMATS = (".gif", ".mp4")
MAX_DRAWN_FRAMES = 400  # a longer episode is drawn every k-th step (k = the smallest that keeps it under this)
NO_GL = "MuJoCo could not render ({why}): without a display set MUJOCO_GL=egl or osmesa, or draw the video from the " \
        "rollout instead: video_source=drawn"


def check_video_path(path, source: str = "drawn") -> None:
    """Fail before any work when the video cannot be written: an unknown suffix, MP4 without ffmpeg."""
    check_choice("video_source", source, SOURCES)
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"video={path}: name a .gif or an .mp4 file")
    if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise UserError(f"video={path}: MP4 needs ffmpeg (pip install 'dfplan[video]'); or write a GIF: "
                        f"video={Path(path).with_suffix('.gif')}")


def record_video(controller, task, goal: str, seed: int, path: str | Path, fps: int = 30, source: str = "drawn",
                 title: str = "") -> Path:
    """Run one episode of `task` (env seed `seed`) with `controller` and write it to `path` (.gif or .mp4)."""
    check_video_path(path, source)
    controller = as_controller(controller)
    env = task.make_env(goal=goal, render_mode="rgb_array" if source == "render" else None)
    obs, _ = env.reset(seed=seed)
    steps = env.spec.max_episode_steps
    controller.max_episode_steps = steps
    controller.reset(seed=seed)
    frames = [_render(env)] if source == "render" else []
    states, achieved, goals, plans = [obs["observation"]], [obs["achieved_goal"]], [obs["desired_goal"]], [None]
    for _ in range(steps):
        action = controller.act({k: v[None] for k, v in obs.items()})[0]
        plans[-1] = controller.history[-1][0] if controller.history else None  # the plan this step follows
        obs, *_ = env.step(action)
        states.append(obs["observation"])
        achieved.append(obs["achieved_goal"])
        goals.append(obs["desired_goal"])
        plans.append(plans[-1])
        if source == "render":
            frames.append(_render(env))
    env.close()
    if source == "drawn":
        every = math.ceil(len(states) / MAX_DRAWN_FRAMES)
        shown = list(range(0, len(states), every))
        frames = task.animate(np.array(states), np.array(achieved), np.array(goals), plans, shown,
                              title=f"{title}: " if title else "")
        fps = max(1, round(fps / every))
    return write_frames(frames, path, fps)


def _render(env) -> np.ndarray:
    """One frame of MuJoCo's camera; no OpenGL is one line (a UserError), not a traceback and GLFW's warnings."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GLFW warns about the missing display before it fails
            return np.asarray(env.render())
    except Exception as err:  # GL failures surface as many types (mujoco.FatalError, ImportError, AttributeError)
        first = (str(err).strip().splitlines() or [""])[0].split(", ")[0][:100]
        raise UserError(NO_GL.format(why=f"{type(err).__name__}: {first}" if first else type(err).__name__)) from err


def write_frames(frames, path: str | Path, fps: int) -> Path:
    """RGB frames [H, W, 3] (any iterable) -> a GIF (pillow) or an MP4 (imageio-ffmpeg) at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        import imageio.v2 as imageio  # optional: the video extra

        with imageio.get_writer(path, fps=fps, macro_block_size=16) as writer:
            for frame in frames:
                writer.append_data(np.asarray(frame))
        return path
    images = [Image.fromarray(np.asarray(frame)).convert("P", palette=Image.ADAPTIVE) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path
