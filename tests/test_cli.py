"""The console scripts as a user runs them (subprocesses, real Hydra parsing)."""

import importlib.util
import json
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
def test_every_console_script_explains_itself(cmd, tmp_path):
    result = run([cmd, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "usage: " + cmd in out and "example: " + cmd in out and "Powered by Hydra" not in out
    assert "seed:" in out or "env:" in out  # keys with their defaults
    assert ("model: bc, df_rnn, diffuser, lowlevel" in out) == (cmd == "dfplan-train")  # groups only where they exist


# every user mistake: exit 2, one line that names the key, no traceback
MISTAKES = [
    (["dfplan-eval", "env=pointmaze-umaz"], "unknown env 'pointmaze-umaz'"),
    (["dfplan-demo", "env=pointmaze-umaz"], "unknown env 'pointmaze-umaz'"),
    (["dfplan-plan", "env=pointmaze-umaz"], "unknown env 'pointmaze-umaz'"),
    (["dfplan-train", "env=pointmaze-umaz"], "unknown env 'pointmaze-umaz'"),
    (["dfplan-eval", "episodes=0"], "episodes=0"),
    (["dfplan-eval", "episodes=-1"], "episodes=-1"),
    (["dfplan-demo", "episodes=0"], "episodes=0"),
    (["dfplan-eval", "episodes=abc"], "episodes='abc'"),
    (["dfplan-eval", "episdes=5"], "unknown key 'episdes' (did you mean 'episodes'?)"),
    (["dfplan-eval", "+episdes=5"], "unknown key 'episdes'"),
    (["dfplan-eval", "device=cuda"], "device="),
    (["dfplan-eval", "goal=left"], "goal='left'"),
    (["dfplan-eval", "guidance_scale=nan"], "guidance_scale=nan"),
    (["dfplan-eval", "horizon=1.5"], "horizon=1.5"),
    (["dfplan-eval", "planner=df", "checkpoint=missing.pt"], "missing.pt does not exist"),
    (["dfplan-eval", "variant=best"], "variant='best'"),
    (["dfplan-eval", "env=ogbench-pointmaze-medium-goal", "planner=diffuser"],
     "dfplan-train env=ogbench-pointmaze-medium-goal model=diffuser"),
    (["dfplan-eval", "results=/no/such/dir/r.jsonl"], "cannot write /no/such/dir/r.jsonl"),
    (["dfplan-eval", "env=pointmaze-umaze", "checkpoint=pointmaze-medium-dwell"], "trained for env=pointmaze-medium"),
    (["dfplan-eval", "planner=df", "checkpoint=pointmaze-umaze-diffuser"], "holds a Diffuser model, not a DF one"),
    (["dfplan-eval", "planner=diffuser", "guidance_scale=1"], "DF settings ['guidance_scale'] do not apply"),
    (["dfplan-eval", "planner=diffuser", "snap_radius=0.1"], "snap_radius applies to a Diffuser plan reached by"),
    (["dfplan-plan", "horizon=0"], "horizon=0"),
    (["dfplan-plan", "starts=0"], "starts=0"),
    (["dfplan-data", "stepz=10"], "unknown key 'stepz'"),
    (["dfplan-data", "env=x", "maze_map=[[1,1,1],[1,0,1],[1,1,1]]"], "maze_map has 1 free cell"),
    (["dfplan-data", "env=x", "maze_map=banana"], "maze_map must be"),
    (["dfplan-data", "env=x", "maze_map=[[1,1,1,1],[1,0,a,1],[1,1,1,1]]"], "maze_map must be"),
    (["dfplan-data", "env=pointmaze-umaze", "noise=0.3"], "noise= does not apply"),
    (["dfplan-train", "train.steps=-1"], "train.steps=-1"),
    (["dfplan-train", "train.batch_size=0"], "train.batch_size=0"),
    (["dfplan-train", "train=huge"], "train/huge"),
    (["dfplan-train", "model.cell=lstm"], "model.cell='lstm'"),
    (["dfplan-train", "+experiment=df_paper", "train.window_steps=64"], "multiple of model.frame_stack=10"),
    (["dfplan-train", "train.grad_clip=-1"], "train.grad_clip=-1"),
    (["dfplan-train", "+planner.guidance_rule=magic"], "guidance_rule='magic'"),
    (["dfplan-train", "+planner.guidanc_scale=1"], "unknown planner setting 'guidanc_scale'"),
    (["dfplan-train", "planner=8"], "planner=8 must be a mapping of settings"),
    (["dfplan-eval", "history_guidance=inf"], "history_guidance=inf"),
    (["dfplan-eval", "guidance_rule=classifier"], "guidance_rule='classifier'"),
    (["dfplan-eval", "guided_dims=states"], "guided_dims='states'"),
    (["dfplan-plan", "guide_last_step=maybe"], "guide_last_step"),
    (["dfplan-eval", "execution=teleport"], "execution='teleport'"),
    (["dfplan-eval", "env=pointmaze-umaze", "execution=lowlevel"], "dfplan-train env=pointmaze-umaze model=lowlevel"),
    (["dfplan-eval", "planner=bc", "env=fetch-push", "execution=lowlevel"], "does not apply to planner=bc"),
    (["dfplan-eval", "env=ogbench-cube-double", "execution=lowlevel", "lowlevel=ogbench-cube-single-default"],
     "not a lowlevel one"),
    (["dfplan-train", "model=lowlevel", "model.k=100"], "model.k=100 needs windows"),
]


@pytest.mark.parametrize("args,message", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_user_mistakes_are_one_clear_line(args, message, tmp_path):
    result = run(args, tmp_path, {"MINARI_DATASETS_PATH": str(tmp_path)}, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert message in lines[0], lines[0]


def test_train_refuses_a_dataset_made_for_another_task(datasets, tmp_path):
    result = run(["dfplan-train", "env=pointmaze-medium", "dataset=dfplan/pointmaze/umaze-v0", f"out={tmp_path / 'r'}"],
                 tmp_path)
    assert result.returncode == 2 and "was not made for env=pointmaze-medium: its maze is not" in result.stderr


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


def test_eval_prints_a_human_line_then_json(tmp_path):
    result = run(["dfplan-eval", "episodes=2", "max_episode_steps=40", "progress=false", "results=r.jsonl"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    human, line = result.stdout.strip().splitlines()[-2:]
    assert "pointmaze-umaze (fixed goal), 2 episodes: normalized score" in human
    summary = json.loads(line)
    assert summary["settings"]["objective"] == "geodesic" and summary["episodes"] == 2
    assert summary == json.loads((tmp_path / "r.jsonl").read_text())
    assert all(len(str(v).split(".")[-1]) <= 4 for v in summary.values() if isinstance(v, float))


def test_demo_runs_end_to_end(tmp_path):
    result = run(["dfplan-demo", "episodes=2", "out=demo.png"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "normalized score" in result.stdout and "episode seed=0" in result.stdout
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_plan_command_draws_the_plans(tmp_path):
    result = run(["dfplan-plan", "starts=2", "horizon=8", "out=plan.png"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "end distance to goal" in result.stdout and "geodesic guidance" in result.stdout
    assert "planned positions in walls" in result.stdout and (tmp_path / "plan.png").exists()
    assert "open-loop dynamics error" in result.stdout


def test_custom_maze_data_train_eval_plot(tmp_path):
    """A user's own maze through the CLI: data -> train (tiny) -> eval -> plot, the task recovered from the data."""
    env = {"MINARI_DATASETS_PATH": str(tmp_path / "data")}
    maze = "maze_map=[[1,1,1,1,1],[1,0,0,0,1],[1,0,1,0,1],[1,0,0,0,1],[1,1,1,1,1]]"
    steps = ["dfplan-data", "env=ring", maze, "steps=2000", "ref_episodes=2", "progress=false"]
    assert run(steps, tmp_path, env).returncode == 0
    train = ["dfplan-train", "env=ring", "out=run", "train.steps=30", "train.batch_size=16", "train.window_steps=16",
             "train.warmup_steps=5", "train.ema_start=5", "train.val_every=30", "train.checkpoint_every=30",
             "train.progress=false", "model.hidden=16", "model.mlp_hidden=16", "model.emb_dim=8", "device=cpu"]
    result = run(train, tmp_path, env)
    assert result.returncode == 0, result.stderr[-2000:]
    result = run(["dfplan-eval", "env=ring", "checkpoint=run/final.pt", "episodes=2", "max_episode_steps=20",
                  "plot=ring.png", "progress=false", "horizon=4", "ddim_steps=2"], tmp_path, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ring (fixed goal), 2 episodes" in result.stdout and (tmp_path / "ring.png").stat().st_size > 5_000


NO_GL = {"MUJOCO_GL": "glfw", "DISPLAY": ""}  # MuJoCo's default GL backend on a machine without a display


@pytest.mark.parametrize("env,frames", [("pointmaze-umaze", 301), ("fetch-push", 51)])
def test_eval_draws_a_gif_without_opengl(env, frames, tmp_path):
    """`video=` draws the episode from the rollout with matplotlib (maze top-down; Fetch's gripper and object in
    metres): one frame for the reset and one per step, no OpenGL needed."""
    from PIL import Image

    result = run(["dfplan-eval", f"env={env}", "episodes=1", "video=ep.gif", "progress=false"], tmp_path, NO_GL)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(tmp_path / "ep.gif").n_frames == frames


def test_eval_video_without_opengl_or_ffmpeg_is_one_line(tmp_path):
    """MuJoCo's camera without OpenGL, or an MP4 without ffmpeg: exit 2 and one line that says what to do."""
    result = run(["dfplan-eval", "episodes=1", "video=ep.gif", "video_source=render", "progress=false"], tmp_path,
                 NO_GL)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: MuJoCo could not render")
    assert "video_source=drawn" in result.stderr
    result = run(["dfplan-eval", "episodes=1", "video=ep.avi"], tmp_path)
    assert result.returncode == 2 and "name a .gif or an .mp4 file" in result.stderr
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        result = run(["dfplan-eval", "episodes=1", "video=ep.mp4"], tmp_path)
        assert result.returncode == 2 and "MP4 needs ffmpeg" in result.stderr and "video=ep.gif" in result.stderr


def test_eval_writes_an_mp4_when_asked(tmp_path):
    """`video=` through headless rendering; runs where the video extra (imageio-ffmpeg) and an EGL driver exist."""
    pytest.importorskip("imageio_ffmpeg", reason="needs pip install 'dfplan[video]'")
    result = run(["dfplan-eval", "episodes=1", "video=ep.mp4", "video_source=render", "progress=false"], tmp_path,
                 env_extra={"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}, timeout=300)
    if result.returncode != 0 and "GL" in result.stderr:
        pytest.skip(f"no headless OpenGL here: {result.stderr.strip().splitlines()[-1][:200]}")
    assert result.returncode == 0, result.stderr[-2000:]
    import imageio

    frames = sum(1 for _ in imageio.get_reader(tmp_path / "ep.mp4"))
    assert frames == 301  # the reset frame and one per step of the 300-step U-Maze episode


def test_maze_summary_keeps_the_row_made_last_whichever_file_holds_it(tmp_path):
    """benchmarks/summary.py: a re-measured cell (a retrained checkpoint) replaces the older row even when the old row
    sits in a file named later on the command line."""
    def row(score, time):
        return json.dumps({"script": "maze", "env": "pointmaze-medium", "goal": "fixed", "method": "diffuser",
                           "seed": 0, "score_mean": score, "success_rate": 1.0, "time": time, "command": "c",
                           "device": "cpu"})

    (tmp_path / "new.jsonl").write_text(row(73.6, "2026-11-30T12:00:00+00:00") + "\n")
    (tmp_path / "old.jsonl").write_text(row(22.0, "2026-11-25T07:41:25+00:00") + "\n")
    script = Path(__file__).parent.parent / "benchmarks" / "summary.py"
    result = subprocess.run([sys.executable, str(script), "new.jsonl", "old.jsonl"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "73.6" in result.stdout and "22.0" not in result.stdout
