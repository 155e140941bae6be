"""The console scripts as a user runs them (subprocesses, real Hydra parsing)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def run(args, cwd, env_extra=None, timeout=300):
    exe = shutil.which(args[0]) or str(Path(sys.executable).parent / args[0])
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([exe, *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


@pytest.mark.parametrize("cmd", ["dfplan-data", "dfplan-train", "dfplan-eval", "dfplan-plan", "dfplan-demo"])
def test_every_console_script_has_help(cmd, tmp_path):
    result = run([cmd, "--help"], tmp_path)
    assert result.returncode == 0 and "Powered by Hydra" in result.stdout


def test_unknown_key_and_bad_env_are_clear_errors(tmp_path):
    result = run(["dfplan-data", "stepz=10"], tmp_path, {"MINARI_DATASETS_PATH": str(tmp_path)})
    assert result.returncode != 0 and "stepz" in result.stderr
    result = run(["dfplan-data", "env=pointmaze-huge", "steps=10"], tmp_path, {"MINARI_DATASETS_PATH": str(tmp_path)})
    assert result.returncode == 2 and "unknown env 'pointmaze-huge'" in result.stderr


def test_train_without_dataset_names_the_command(tmp_path):
    result = run(["dfplan-train", "env=pointmaze-large", f"out={tmp_path / 'run'}"], tmp_path,
                 {"MINARI_DATASETS_PATH": str(tmp_path)})
    assert result.returncode == 2 and "dfplan-data env=pointmaze-large" in result.stderr


def test_data_command_writes_a_dataset(tmp_path):
    result = run(["dfplan-data", "steps=500", "ref_episodes=2", "progress=false"], tmp_path,
                 {"MINARI_DATASETS_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "wrote dfplan/pointmaze/umaze-v0: 500 steps" in result.stdout
    assert (tmp_path / "dfplan/pointmaze/umaze-v0/data/main_data.hdf5").exists()


def test_demo_runs_end_to_end(tmp_path):
    result = run(["dfplan-demo", "episodes=1", "out=demo.png"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "normalized score" in result.stdout and "episode seed=0" in result.stdout
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_plan_command_draws_the_plans(tmp_path):
    result = run(["dfplan-plan", "starts=2", "horizon=8", "out=plan.png"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "end distance to goal" in result.stdout and (tmp_path / "plan.png").exists()


def test_eval_writes_an_mp4_when_asked(tmp_path):
    """`video=` through headless rendering; runs where the video extra (imageio-ffmpeg) and an EGL driver exist."""
    pytest.importorskip("imageio_ffmpeg", reason="needs pip install 'dfplan[video]'")
    result = run(["dfplan-eval", "episodes=1", "video=ep.mp4", "progress=false"], tmp_path,
                 env_extra={"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}, timeout=300)
    if result.returncode != 0 and "GL" in result.stderr:
        pytest.skip(f"no headless OpenGL here: {result.stderr.strip().splitlines()[-1][:200]}")
    assert result.returncode == 0, result.stderr[-2000:]
    import imageio

    frames = sum(1 for _ in imageio.get_reader(tmp_path / "ep.mp4"))
    assert frames == 301  # the reset frame and one per step of the 300-step U-Maze episode
