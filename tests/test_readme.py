"""The README as a user meets it: its snippets run from any folder, and a user's own control loop around
`MPCController(load_planner(...))` does as well as dfplan-eval on the same held-out episodes."""

import subprocess
import sys
from pathlib import Path

import numpy as np

import dfplan

ROOT = Path(__file__).parents[1]


def test_readme_snippets_run_outside_the_checkout(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "readme_snippets.py"), str(ROOT / "README.md"),
                           "--short"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(": ok") >= 2


def test_users_own_loop_scores_like_dfplan_eval():
    """50 held-out episodes (env seeds 1000..1049), one env at a time, against the batched evaluation."""
    episodes, seed = 50, 1000
    run = dfplan.evaluate("pointmaze-umaze", episodes=episodes, seed=seed, progress=False)
    task = run.task
    controller = dfplan.MPCController(dfplan.load_planner("pointmaze-umaze"))
    env = dfplan.make_env("pointmaze-umaze")
    returns = []
    for s in range(seed, seed + episodes):
        obs, _ = env.reset(seed=s)
        controller.reset(seed=s)
        total = 0.0
        for _ in range(env.spec.max_episode_steps):
            obs, reward, terminated, truncated, _ = env.step(controller.act(obs))
            total += reward
        returns.append(total)
    ref_min, ref_max = run.summary["ref_scores"]
    mine = 100 * (np.array(returns) - ref_min) / (ref_max - ref_min)
    theirs = task.normalized(run.result.episodes, ref_min, ref_max)
    noise = np.sqrt(mine.var(ddof=1) / episodes + theirs.var(ddof=1) / episodes)
    assert abs(mine.mean() - theirs.mean()) < 3 * noise + 1.0, (mine.mean(), theirs.mean(), noise)
    assert mine.mean() > 80  # the tuned controller, not a default one (which scored far lower)
