"""Reliability: run-folder lock, safe resume, log continuity, stale temp files, crash-safe dataset swaps, and a
fuzz of the controller and planner inputs (in a subprocess, so a segfault fails a test instead of pytest)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_config

import dfplan
from dfplan.checkpoint import load_checkpoint
from dfplan.data import load_minari
from dfplan.df.controller import MPCController
from dfplan.envs.recipes import clean_stale_staging, dataset_exists, generate_pointmaze_dataset, recover_dataset
from dfplan.errors import UserError
from dfplan.training import RunLock, train, truncate_log

TESTS = Path(__file__).parent
DS = "dfplan/pointmaze/umaze-v0"


def _dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _log_rows(out: Path) -> list[tuple[int, str, str]]:
    lines = (out / "log.csv").read_text().splitlines()
    assert lines[0] == "step,key,value"
    return [(int(s), k, v) for s, k, v in (line.split(",") for line in lines[1:])]


# --- 1. run folder lock ----------------------------------------------------------------------------------------
def test_second_run_into_a_locked_out_is_refused_and_a_killed_holder_leaves_no_stale_lock(datasets, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from dfplan.training import RunLock;"
                               f"RunLock(Path(r'{out}')).acquire(); print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = train_config(out, steps=5)
        cfg.dataset = "tst/not-there-v0"  # refused by the lock before the dataset is looked at
        with pytest.raises(UserError, match=f"in use by another training run \\(pid {holder.pid}\\)") as err:
            train(cfg)
        assert "\n" not in str(err.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / ".lock").exists()  # the file stays; the lock went with its process
    train(train_config(out, steps=5))
    assert load_checkpoint(out / "final.pt")["step"] == 5
    RunLock(out).acquire().release()  # and train() released its own lock when it returned


def test_lock_is_released_when_training_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty"))
    cfg = train_config(tmp_path / "run", steps=5)
    with pytest.raises(UserError, match="cannot load Minari dataset"):
        train(cfg)
    RunLock(tmp_path / "run").acquire().release()


# --- 2. resume safety --------------------------------------------------------------------------------------------
def test_resume_refuses_another_dataset_or_model(datasets, tmp_path):
    train(train_config(tmp_path, steps=10))
    for key, value, match in [("dataset", "tst/other-v0", "dataset='dfplan/pointmaze/umaze-v0'.*'tst/other-v0'"),
                              ("model.hidden", 64, "model.hidden=32.*model.hidden=64"),
                              ("model.frame_stack", 2, "model.frame_stack=4"),
                              ("train.normalizer", "minmax", "train.normalizer='gaussian'")]:
        cfg = train_config(tmp_path, steps=20)
        cfg.resume = True
        section, _, leaf = key.rpartition(".")
        (cfg[section] if section else cfg)[leaf] = value
        with pytest.raises(UserError, match=match) as err:
            train(cfg)
        assert "\n" not in str(err.value) and "its own out=" in str(err.value)
    cfg = train_config(tmp_path / "empty", steps=20)
    cfg.resume = True
    with pytest.raises(UserError, match="does not exist"):
        train(cfg)
    cfg = train_config(tmp_path, steps=20)  # the same dataset and model resume fine
    cfg.resume = True
    train(cfg)
    assert load_checkpoint(tmp_path / "final.pt")["step"] == 20


# --- 3 + 4. log continuity and stale temp files (training) --------------------------------------------------------
def test_resume_drops_log_rows_after_the_checkpoint_and_stale_temp_files(datasets, tmp_path):
    train(train_config(tmp_path, steps=50))
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 50
    # what a run killed after its last checkpoint leaves: rows past step 50 (one cut short) and temp files
    with open(tmp_path / "log.csv", "a") as f:
        f.write("75,loss,999\r\n75,lr,999\r\n100,loss,999\r\n100,lo")
    stale = [tmp_path / ".last.pt.tmp-4242", tmp_path / ".final.pt.tmp-4243", tmp_path / ".log.csv.tmp-4244"]
    for p in stale:
        p.write_bytes(b"half a file")
    cfg = train_config(tmp_path, steps=100)
    cfg.resume = True
    train(cfg)
    rows = _log_rows(tmp_path)
    assert "999" not in {v for *_, v in rows}
    pairs = [(s, k) for s, k, _ in rows]
    assert len(pairs) == len(set(pairs))  # no step logged twice
    assert [s for s, k, _ in rows if k == "loss"] == [25, 50, 75, 100]
    assert [s for s, _, _ in rows] == sorted(s for s, _, _ in rows)
    assert not any(p.exists() for p in stale)


def test_truncate_log_keeps_rows_up_to_the_step_and_rewrites_atomically(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("step,key,value\r\n10,loss,1\r\n20,loss,2\r\n20,val_loss,2\r\n30,loss,3\r\n3")
    before = log.stat().st_ino
    truncate_log(log, 20)
    assert log.read_text().splitlines() == ["step,key,value", "10,loss,1", "20,loss,2", "20,val_loss,2"]
    assert log.stat().st_ino != before  # a new file renamed over the old one, not an in-place rewrite
    assert not list(tmp_path.glob(".log.csv.tmp-*"))
    unchanged = log.stat().st_ino
    truncate_log(log, 20)  # nothing to drop: left as it is
    assert log.stat().st_ino == unchanged
    truncate_log(log, 0)  # a fresh start over a killed run that never checkpointed
    assert log.read_text().splitlines() == ["step,key,value"]
    truncate_log(tmp_path / "missing.csv", 5)  # no log yet: nothing to do
    assert not (tmp_path / "missing.csv").exists()


# --- 6. unwritable out ------------------------------------------------------------------------------------------
def test_unwritable_out_is_a_user_error_before_the_dataset_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty"))  # loading would fail with another error
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker, blocker / "run"):
        with pytest.raises(UserError, match="is not a writable folder") as err:
            train(train_config(out, steps=5))
        assert "\n" not in str(err.value)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(UserError, match="is not a writable folder"):
                train(train_config(ro / "run", steps=5))
            with pytest.raises(UserError, match="is not a writable folder"):
                train(train_config(ro, steps=5))
        finally:
            ro.chmod(0o755)


# --- 4 + 5. dataset writes: stale staging folders, a swap cut in two by a kill -----------------------------------
ID = "tst/swap-v0"


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """Two complete copies of dataset `ID`: 'old' (200 steps) and 'new' (250 steps), to arrange by hand."""

    base = tmp_path_factory.mktemp("versions")
    with pytest.MonkeyPatch.context() as mp:
        for name, steps in (("old", 200), ("new", 250)):
            mp.setenv("MINARI_DATASETS_PATH", str(base / name))
            generate_pointmaze_dataset("pointmaze-umaze", steps=steps, dataset_id=ID, ref_episodes=1, progress=False)
    return base


def _cut_swap(two_versions, root: Path, owner: int | None, manifest: bool = True) -> Path:
    """The state a kill between the two renames leaves: the id's folder gone, the old copy at staging/replaced,
    the new one at staging/<id>."""
    name = f".dfplan-staging-{owner}-k1ll3d" if owner is not None else ".dfplan-staging-k1ll3d_x"
    staging = root / name
    shutil.copytree(two_versions / "new" / ID, staging / ID)
    if manifest:
        (staging / "staged.json").write_text(json.dumps({"dataset_id": ID, "pid": owner}))
    shutil.copytree(two_versions / "old" / ID, staging / "replaced")
    assert not (root / ID).exists()
    return staging


def _steps(dataset_id: str) -> int:

    return load_minari(dataset_id).total_steps


@pytest.mark.parametrize("observer", ["dataset_exists", "load_minari", "next_write"])
def test_a_swap_killed_between_its_renames_never_loses_the_id(two_versions, tmp_path, monkeypatch, observer):

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    staging = _cut_swap(two_versions, tmp_path, owner=_dead_pid())
    if observer == "dataset_exists":
        assert dataset_exists(ID)
    elif observer == "load_minari":
        assert load_minari(ID).total_steps == 250
    else:
        with pytest.raises(FileExistsError, match="overwrite=true"):  # recovered, so it exists and is kept
            generate_pointmaze_dataset("pointmaze-umaze", steps=200, dataset_id=ID, ref_episodes=1, progress=False)
        assert not staging.exists()  # the dead writer's folder is gone once the id is safe
    assert _steps(ID) == 250  # the new copy the writer had finished


def test_a_live_writers_swap_is_left_to_it_and_older_staging_names_recover(two_versions, tmp_path, monkeypatch):

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    live = _cut_swap(two_versions, tmp_path, owner=os.getppid())
    assert not recover_dataset(ID) and clean_stale_staging() == [] and live.exists()
    shutil.rmtree(live)
    # folders named before staging folders carried a pid (no pid, no staged.json): `replaced` shows the swap began
    _cut_swap(two_versions, tmp_path, owner=None, manifest=False)
    assert dataset_exists(ID) and _steps(ID) == 250


def test_stale_staging_folders_of_dead_writers_are_removed_at_the_next_write(two_versions, tmp_path, monkeypatch):

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dead, live = _dead_pid(), os.getppid()
    killed_mid_write = tmp_path / f".dfplan-staging-{dead}-aaaa"  # killed while Minari was still writing
    (killed_mid_write / ID / "data").mkdir(parents=True)
    (killed_mid_write / ID / "data" / "main_data.hdf5").write_bytes(b"half")
    before_swap = tmp_path / f".dfplan-staging-{dead}-bbbb"  # killed after staged.json, before the first rename
    shutil.copytree(two_versions / "new" / ID, before_swap / ID)
    (before_swap / "staged.json").write_text(json.dumps({"dataset_id": ID, "pid": dead}))
    shutil.copytree(two_versions / "old" / ID, tmp_path / ID)
    running = tmp_path / f".dfplan-staging-{live}-cccc"
    running.mkdir()
    legacy = tmp_path / ".dfplan-staging-q9z8y7x6"  # no pid in the name: whose it is is unknown, so it stays
    legacy.mkdir()
    ds = generate_pointmaze_dataset("pointmaze-umaze", steps=120, dataset_id="tst/other-v0", ref_episodes=1,
                                    progress=False)
    assert ds.total_steps == 120
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".dfplan-staging-"))
    assert left == sorted([running.name, legacy.name])
    assert _steps(ID) == 200  # the old copy in place was never touched: the cut write had not swapped yet


def test_overwrite_replaces_through_the_staged_swap(two_versions, tmp_path, monkeypatch):

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    shutil.copytree(two_versions / "old" / ID, tmp_path / ID)
    ds = generate_pointmaze_dataset("pointmaze-umaze", steps=130, dataset_id=ID, overwrite=True, ref_episodes=1,
                                    progress=False)
    assert ds.total_steps == 130 and _steps(ID) == 130
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dfplan-staging-")]


# --- 7. fuzz: MPCController.act and DFPlanner.plan -----------------------------------------------------------------
# Known failures, tolerated (and counted) by the fuzz until fixed: none left (the three it found are fixed and have
# their own tests below).
KNOWN: dict = {}
SPECIAL = np.array([0.0, 3e38, -3e38, np.nan, np.inf, -np.inf, 1e-45, 1e30, -1.0, 7.5])
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]


def _values(rng, shape, dtype):
    kind = rng.integers(5)
    if kind == 0:
        x = rng.normal(0.0, 1.0, shape) * 10.0 ** rng.uniform(-3, 3)
    elif kind == 1:
        x = rng.choice(SPECIAL, size=shape)
    elif kind == 2:
        x = np.full(shape, rng.choice(SPECIAL))
    elif kind == 3:
        x = rng.normal(0.0, 2.0, shape)
        if x.size:
            x.flat[rng.integers(x.size)] = rng.choice(SPECIAL)
    else:
        x = rng.uniform(-3e38, 3e38, shape)
    with np.errstate(all="ignore"):
        x = np.asarray(x).astype(dtype)
    form = rng.integers(4)
    if form == 1 and dtype not in (np.uint8, np.int8):
        return torch.from_numpy(np.ascontiguousarray(x))
    if form == 2:
        return x.tolist()
    return x


def _act_case(rng, n: int, started: bool):
    """(tag, observation, good?) for a controller in an episode of batch size n (0: unbatched); `started`: a step
    of this episode has been taken (only then is another batch size a mistake)."""
    lead = () if n == 0 else (n,)
    dt = DTYPES[rng.integers(len(DTYPES))]
    good = ("good", {"observation": _values(rng, lead + (4,), dt), "desired_goal": _values(rng, lead + (2,), dt)})
    if rng.random() < 0.7:
        return (*good, True)
    m = n if n else 1
    bad = [
        ("obs_dim", {"observation": _values(rng, lead + (int(rng.choice([0, 1, 3, 5, 40])),), dt),
                     "desired_goal": _values(rng, lead + (2,), dt)}),
        ("goal_dim", {"observation": _values(rng, lead + (4,), dt),
                      "desired_goal": _values(rng, lead + (int(rng.choice([0, 1, 3, 4])),), dt)}),
        ("obs_0d", {"observation": _values(rng, (), dt), "desired_goal": _values(rng, (2,), dt)}),
        ("goal_0d", {"observation": _values(rng, lead + (4,), dt), "desired_goal": _values(rng, (), dt)}),
        ("obs_3d", {"observation": _values(rng, (m, 1, 4), dt), "desired_goal": _values(rng, (m, 2), dt)}),
        ("rows", {"observation": _values(rng, (m, 4), dt), "desired_goal": _values(rng, (m + 1, 2), dt)}),
        ("batch_changed", {"observation": _values(rng, (m + 2, 4), dt), "desired_goal": _values(rng, (m + 2, 2), dt)}),
        ("no_goal", {"observation": _values(rng, lead + (4,), dt)}),
        ("flat", _values(rng, lead + (4,), dt)),
        ("no_observation", {"desired_goal": _values(rng, (2,), dt)}),
        ("text", {"observation": ["a", "b", "c", "d"], "desired_goal": [0.0, 1.0]}),
    ]
    if not started:
        bad = [b for b in bad if b[0] != "batch_changed"]
    tag, obs = bad[rng.integers(len(bad))]
    return tag, obs, False


def _plan_case(rng):
    """(tag, kwargs for planner.plan, what is allowed: 'ok' | 'value_error' | 'ok_or_value_error')."""
    b = int(rng.choice([1, 2, 3, 5]))
    dt = DTYPES[rng.integers(len(DTYPES))]
    horizon = [None, 1, 2, 3, 16, 2.0, 0, -1, 2.5, True, float("nan"), float("inf")][rng.integers(12)]
    good_h = horizon is None or (not isinstance(horizon, bool) and np.isfinite(horizon) and horizon >= 1
                                 and float(horizon).is_integer())
    obs, goal = _values(rng, (b, 4), dt), _values(rng, (b, 2), dt)
    case = rng.integers(6)
    if case == 1:
        obs = _values(rng, (b, int(rng.choice([0, 3, 5]))), dt)
        return "obs_dim", dict(obs=obs, goal=goal, horizon=horizon), "value_error"
    if case == 2:
        goal = _values(rng, [(b, 3), (b + 1, 2), (2,), ()][rng.integers(4)], dt)
        return "goal_shape", dict(obs=obs, goal=goal, horizon=horizon), "value_error"
    if case == 3:
        return "batch_0", dict(obs=np.zeros((0, 4), dt), goal=np.zeros((0, 2), dt), horizon=horizon), \
            "ok_or_value_error"
    if case == 4:
        goal = None  # unguided
    if not good_h:
        return "horizon", dict(obs=obs, goal=goal, horizon=horizon), "value_error"
    # finite inputs must plan; NaN/inf in them is refused with a ValueError (check_batch)
    return "good", dict(obs=obs, goal=goal, horizon=horizon), "ok_or_value_error"


def fuzz(calls: int, seed: int = 0) -> dict:
    """Run `calls` fuzzed calls of MPCController.act / DFPlanner.plan on the shipped U-Maze checkpoint (geodesic
    objective); returns counts and the violations of the contract (empty when all is well)."""
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    planner = dfplan.load_planner("pointmaze-umaze", device="cpu")
    assert planner.settings.controller.objective == "geodesic"
    controllers = [MPCController(planner), MPCController(planner, memory=True),
                   MPCController(planner, memory=True, memory_tokens=2), MPCController(planner, max_episode_steps=20),
                   MPCController(planner, objective="goal_distance")]
    rng = np.random.default_rng(seed)
    counts = {"calls": 0, "act": 0, "plan": 0, "returned": 0, "exceptions": {}, "known": {},
              "planner_actions_outside_1": 0, "controller_failures": 0}
    violations = []

    def record(target, tag, allowed, fn):
        counts["calls"] += 1
        counts[target] += 1
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001  the point is to see every type
            kind = type(err).__name__
            counts["exceptions"][kind] = counts["exceptions"].get(kind, 0) + 1
            if (target, tag, kind) in KNOWN:
                counts["known"][f"{target}:{tag}:{kind}"] = counts["known"].get(f"{target}:{tag}:{kind}", 0) + 1
            elif not (isinstance(err, ValueError) and allowed in ("value_error", "ok_or_value_error")):
                violations.append(f"{target}[{tag}] raised {kind}: {str(err)[:200]}")
            return None
        counts["returned"] += 1
        if allowed == "value_error":
            violations.append(f"{target}[{tag}] returned instead of raising a ValueError")
        return result

    while counts["calls"] < calls:
        if rng.random() < 0.3:  # a controller episode: reset, then a few steps at one batch size
            ctrl = controllers[rng.integers(len(controllers))]
            n = int(rng.choice([0, 0, 1, 2, 3, 5]))
            ctrl.reset(seed=int(rng.integers(1 << 30)))
            if rng.random() < 0.1:  # an empty batch: an empty answer or a ValueError, nothing else
                obs = {"observation": np.zeros((0, 4), np.float32), "desired_goal": np.zeros((0, 2), np.float32)}
                a = record("act", "batch_0", "ok_or_value_error", lambda: ctrl.act(obs))
                if a is not None and np.shape(a) != (0, 2):
                    violations.append(f"act[batch_0] returned shape {np.shape(a)}")
                continue
            started = False
            for _ in range(int(rng.integers(1, 12))):
                if counts["calls"] >= calls:
                    break
                tag, obs, good = _act_case(rng, n, started)
                a = record("act", tag, "ok" if good else "value_error", lambda: ctrl.act(obs))
                if a is None:
                    continue
                started = True
                want = (n, 2) if n else (2,)
                if not isinstance(a, np.ndarray) or a.shape != want:
                    violations.append(f"act[{tag}] returned {type(a).__name__} {np.shape(a)}, wanted {want}")
                elif not (np.isfinite(a).all() and (np.abs(a) <= 1.0).all()):
                    violations.append(f"act[{tag}] returned {a.tolist()}: not finite or outside [-1, 1]")
            counts["controller_failures"] += ctrl.failures
        else:
            tag, kwargs, allowed = _plan_case(rng)
            gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
            plan = record("plan", tag, allowed, lambda: planner.plan(generator=gen, **kwargs))
            if plan is None:
                continue
            rows = len(kwargs["obs"])
            steps = (kwargs["horizon"] or planner.default_horizon) * planner.frame_stack
            if tuple(plan.actions.shape) != (rows, steps, planner.act_dim):
                violations.append(f"plan[{tag}] returned actions {tuple(plan.actions.shape)}")
            elif not torch.isfinite(plan.actions).all():
                goal = kwargs["goal"]
                if goal is not None and np.abs(np.asarray(goal, dtype=np.float64)).max() > 1e38:
                    counts["known"]["plan:huge_goal:non-finite actions"] = \
                        counts["known"].get("plan:huge_goal:non-finite actions", 0) + 1
                    continue
                violations.append(f"plan[{tag}] returned non-finite actions for "
                                  f"obs={np.asarray(kwargs['obs']).tolist()} "
                                  f"goal={None if kwargs['goal'] is None else np.asarray(kwargs['goal']).tolist()} "
                                  f"horizon={kwargs['horizon']}")
            counts["planner_actions_outside_1"] += int((plan.actions.abs() > 1.0).any(-1).sum())
    return {"counts": counts, "violations": violations}


def _run_fuzz(calls: int, timeout: int) -> dict:
    code = (f"import sys, json; sys.path.insert(0, r'{TESTS}'); import test_reliability as t;"
            f"print('FUZZ ' + json.dumps(t.fuzz({calls}, seed=0)))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, f"the fuzz process died (rc {proc.returncode}):\n{proc.stderr[-6000:]}"
    report = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("FUZZ "))[5:])
    print(json.dumps(report["counts"], indent=1))
    assert report["counts"]["calls"] == calls
    assert report["violations"] == [], "\n".join(report["violations"][:30])
    return report


def test_fuzzed_controller_and_planner_inputs_never_crash():
    report = _run_fuzz(300, timeout=240)
    assert report["counts"]["returned"] > 100  # most calls got through to the model, not only to the checks


@pytest.mark.slow
def test_fuzzed_controller_and_planner_inputs_never_crash_long():
    _run_fuzz(10_000, timeout=3600)


def test_act_with_a_0d_goal_raises_a_value_error():
    ctrl = MPCController(dfplan.load_planner("pointmaze-umaze", device="cpu"))
    with pytest.raises(ValueError):
        ctrl.act({"observation": np.zeros(4, np.float32), "desired_goal": np.float32(1.0)})


def test_plan_toward_a_huge_goal_has_finite_actions():
    planner = dfplan.load_planner("pointmaze-umaze", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = planner.plan(torch.zeros(2, 4), torch.full((2, 2), -3e38), horizon=1,
                            generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(plan.actions).all()


def test_plan_with_0_rows_is_empty_or_a_value_error():
    planner = dfplan.load_planner("pointmaze-umaze", device="cpu")
    try:
        plan = planner.plan(np.zeros((0, 4), np.float32), np.zeros((0, 2), np.float32))
    except ValueError:
        return
    assert plan.actions.shape[0] == 0
