"""Shared helpers for the benchmark scripts: `key=value` arguments, JSON-lines results, Markdown tables.

Every script is run as `python benchmarks/<script>.py key=value ...`. Arguments take their type from the
script's defaults (bool: true/false, int, float, str, list: comma-separated, None-default: a string or `none`);
an unknown key is an error that lists the known ones. `quick=true` swaps in the script's small smoke-test
defaults for every key not given on the command line. Results are appended, one JSON object per line, to
`benchmarks/results/<script>.jsonl` (or `results=PATH`) with the git commit, the command and the config.
Benchmarks measure; they never assert on timings.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from dfplan import devices
from dfplan.checkpoint import resolve_checkpoint
from dfplan.errors import UserError, check_choice
from dfplan.evaluation import run_episodes
from dfplan.run import resolve_task
from dfplan.tasks import get_task
from dfplan.types import as_controller

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
COMMON_DEFAULTS = {"quick": False, "results": None, "threads": 0}
TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


class ArgError(SystemExit):
    """A user's mistake, `ArgError("error: ...")`; `user_errors_as_exit` prints it and exits with code 2."""


# --- arguments -------------------------------------------------------------------------------------
def _convert(key: str, raw: str, default: Any):
    def fail(kind: str):
        raise ArgError(f"error: {key}={raw!r} is not a valid {kind}")

    if raw.lower() in ("none", "null") and (default is None or isinstance(default, str)):
        return None
    if isinstance(default, bool):
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        fail("bool (true/false)")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            fail("int")
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            fail("float")
    if isinstance(default, (list, tuple)):
        items = [s.strip() for s in raw.strip("[]").split(",") if s.strip()]
        elem = default[0] if default else ""
        return [_convert(key, s, elem) for s in items]
    return raw


class Args(dict):
    """A dict with attribute access, plus the set of keys given explicitly on the command line."""

    given: set

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err


def parse_args(defaults: dict, quick_defaults: dict | None = None, doc: str | None = None,
               prefixes: Sequence[str] = (), argv: Sequence[str] | None = None) -> Args:
    """Parse `key=value` arguments against typed `defaults` (plus quick/results/threads).

    `prefixes`: families of free keys such as `checkpoint_` (`checkpoint_pointmaze-umaze=PATH`), kept as strings.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = {**COMMON_DEFAULTS, **defaults}
    if any(a in ("-h", "--help", "help") for a in argv):
        print((doc or "").strip() + "\n\narguments (key=default):")
        for k, v in defaults.items():
            shown = (",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v).lower() if isinstance(v, bool)
                     else v)
            print(f"  {k}={shown}")
        for p in prefixes:
            print(f"  {p}<env>=PATH")
        raise SystemExit(0)
    args, given = Args(defaults), set()
    for arg in argv:
        if "=" not in arg:
            raise ArgError(f"error: arguments are key=value, got {arg!r}; known keys: {', '.join(sorted(defaults))}")
        key, raw = arg.split("=", 1)
        if key in defaults:
            args[key] = _convert(key, raw, defaults[key])
        elif any(key.startswith(p) and len(key) > len(p) for p in prefixes):
            args[key] = raw
        else:
            extra = f" (or {', '.join(p + '<env>' for p in prefixes)})" if prefixes else ""
            raise ArgError(f"error: unknown key {key!r}; known keys: {', '.join(sorted(defaults))}{extra}")
        given.add(key)
    if args["quick"] and quick_defaults:
        for k, v in quick_defaults.items():
            if k not in given:
                args[k] = v
    args.given = given
    if args["threads"]:
        torch.set_num_threads(int(args["threads"]))
    return args


def prefixed(args: Args, prefix: str) -> dict[str, str]:
    """{suffix: value} for the free keys `prefix<suffix>=value`."""
    return {k[len(prefix):]: v for k, v in args.items() if k.startswith(prefix) and k not in COMMON_DEFAULTS}


# --- provenance ------------------------------------------------------------------------------------
def command_line() -> str:
    """The exact command, as `python benchmarks/<script>.py k=v ...` relative to the repo root when possible."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO_ROOT)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script))] + [shlex.quote(a) for a in sys.argv[1:]])


def print_command() -> str:
    cmd = command_line()
    print(f"command: {cmd}", flush=True)
    return cmd


def git_info() -> dict:
    """Commit of the checkout (short hash) and whether tracked files differ from it."""
    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True, timeout=5, cwd=REPO_ROOT).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD") or None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty}


def machine_info(device: str | None = None) -> dict:
    info = {"host": platform.node(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


class Results:
    """Appends one JSON object per measurement to a .jsonl file; keeps them for the tables of this run."""

    def __init__(self, script: str, args: Args, command: str):
        self.script = script
        self.path = Path(args["results"] or BENCH_DIR / "results" / f"{script}.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.base = {"script": script, **git_info(), "command": command,
                     "config": {k: v for k, v in args.items()}}
        self.rows: list[dict] = []

    def add(self, row: dict, device: str | None = None) -> dict:
        full = {**self.base, "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "machine": machine_info(device), **row}
        with open(self.path, "a") as f:
            f.write(json.dumps(full, default=_jsonable) + "\n")
        self.rows.append(full)
        return full


def _jsonable(x):
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return repr(x)


# --- statistics and tables -------------------------------------------------------------------------
def mean_se(values: Iterable) -> tuple[float | None, float | None, int]:
    """(mean, standard error, n) over the finite, non-None values; se is None for n < 2."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return None, None, 0
    m = sum(vals) / n
    if n < 2:
        return m, None, n
    var = sum((v - m) ** 2 for v in vals) / (n - 1)
    return m, math.sqrt(var / n), n


def fmt_mean_se(values: Iterable, digits: int = 1, scale: float = 1.0, pct: bool = False) -> str:
    """`mean ± se` (just `mean` for a single value, `–` for none); pct=True shows fractions as percents."""
    m, se, n = mean_se(values)
    if m is None:
        return "–"
    k = 100.0 if pct else scale
    suffix = "%" if pct else ""
    if se is None:
        return f"{m * k:.{digits}f}{suffix}"
    return f"{m * k:.{digits}f} ± {se * k:.{digits}f}{suffix}"


def group_rows(rows: Sequence[dict], keys: Sequence[str]) -> list[tuple[tuple, list[dict]]]:
    """Rows grouped by the values of `keys`, groups in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return list(groups.items())


Column = tuple[str, Callable[[list[dict]], str]]


def aggregate_table(rows: Sequence[dict], keys: Sequence[str], columns: Sequence[Column],
                    key_headers: Sequence[str] | None = None) -> str:
    """A Markdown table: one line per group of `keys`; each column is (header, fn(group rows) -> cell)."""
    headers = list(key_headers or keys) + [c[0] for c in columns]
    lines = [[str(v) for v in gkey] + [fn(group) for _, fn in columns] for gkey, group in group_rows(rows, keys)]
    return markdown_table(headers, lines)


def col_mean_se(field: str, digits: int = 1, pct: bool = False) -> Callable[[list[dict]], str]:
    return lambda group: fmt_mean_se((r.get(field) for r in group), digits, pct=pct)


def markdown_table(headers: Sequence[str], lines: Sequence[Sequence]) -> str:
    out = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def section(title: str, table: str, command: str, note: str | None = None) -> str:
    """A titled table with the command that produced it (what gets printed and rendered)."""
    parts = [f"### {title}", "", f"`{command}`", "", table]
    if note:
        parts += ["", note]
    return "\n".join(parts) + "\n"


def write_markdown(path: str | Path, sections: Sequence[str], command: str, title: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gi = git_info()
    head = (f"## {title}\n\nGenerated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC at commit "
            f"{gi['commit']}{' (with local changes)' if gi['dirty'] else ''} on {os.cpu_count()} CPU cores by:\n\n"
            f"    {command}\n")
    path.write_text(head + "\n" + "\n".join(sections))
    return path


# --- small shared pieces ---------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    """The device `dfplan.devices.resolve_device` picks ('auto': CUDA when present, else the CPU; a device that is
    not there: an ArgError), named for a results row: 'cuda' or 'cpu' for 'auto', else as given."""
    try:
        picked = devices.resolve_device(device)
    except UserError as err:
        raise ArgError(f"error: {err}") from None
    return picked.type if device == "auto" else str(picked)


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def task_of(env):
    """The `dfplan.tasks.Task` named `env` (a Task passes through); an unknown name is an ArgError."""
    if not isinstance(env, str):
        return env
    try:
        return get_task(env)
    except UserError as err:
        raise ArgError(f"error: {err}") from None


def require_checkpoint(args):
    """(task, DF checkpoint) for `args.env` / `args.checkpoint` / `args.variant`: the checkpoint given (a path or a
    shipped name), else the task's shipped one of that variant (None = the task's default); the task is `env`, else
    the one the checkpoint was made for (`dfplan.run.resolve_task`). Both are recorded back into `args`."""
    variant = args.get("variant")
    try:
        task = resolve_task(args.env, args.checkpoint)
        if variant is not None and not args.checkpoint:
            check_choice("variant", variant, task.variants)
    except UserError as err:
        raise ArgError(f"error: {err}") from None
    checkpoint = default_checkpoint(task, args.checkpoint, "df", variant)
    if checkpoint is None:
        raise ArgError(f"error: no DF checkpoint ships for {task.name}"
                       f"{'' if variant is None else f' (variant={variant})'}; pass checkpoint=PATH")
    args["env"], args["checkpoint"] = task.name, str(checkpoint)
    return task, checkpoint


def default_checkpoint(task, given: str | None = None, planner: str = "df", variant: str | None = None) -> Path | None:
    """The checkpoint `given` (a path or a shipped name; one that does not exist is an ArgError), else the one the
    task (a Task or its name) ships for `planner` ("df": of `variant`, None = the task's default; "diffuser"), or
    None when it ships none."""
    if given:
        try:
            return resolve_checkpoint(given, planner)
        except UserError as err:
            raise ArgError(f"error: {err}") from None
    try:
        return task_of(task).shipped_checkpoint(planner, variant)
    except UserError:
        return None


def reset_states(task, seeds: Iterable[int], goal: str | None = None):
    """(observations [N, Ds], goals [N, Dg]) numpy float32 of the task's env (a Task or its name; `goal`: its goal
    protocol, None = the task's default) reset with each seed."""
    env = task_of(task).make_env(goal=goal)
    obs, goals = [], []
    for s in seeds:
        o, _ = env.reset(seed=int(s))
        obs.append(o["observation"])
        goals.append(o["desired_goal"])
    env.close()
    return np.asarray(obs, dtype=np.float32), np.asarray(goals, dtype=np.float32)


def controller_settings(controller) -> dict:
    """The settings a controller runs with, for a results row (`dfplan.types.Controller.settings_record`): a DF MPC
    controller's sampler and controller settings in the form checkpoints store; a Diffuser controller's mode,
    replanning period, plan length and low-level policy; nothing for controllers without settings."""
    return as_controller(controller).settings_record()


def user_errors_as_exit(main: Callable[[], Any]) -> Any:
    """Run `main`; a user's mistake (an ArgError, a `dfplan.errors.UserError`: a bad key, value or file) ends it
    with one line on stderr and exit code 2, as the dfplan commands do."""
    try:
        return main()
    except ArgError as err:
        if err.code in (0, None):  # --help
            raise
        message = str(err.code)
    except UserError as err:
        message = f"error: {err}"
    print(message, file=sys.stderr)
    raise SystemExit(2)


def outside_maze(layout, xy):
    """in_wall, treating NaN/inf positions as outside the maze too. xy [..., 2] -> bool [...]."""
    xy = np.asarray(xy, dtype=float)
    finite = np.isfinite(xy).all(-1)
    return ~finite | layout.in_wall(np.where(finite[..., None], xy, 0.0))


# --- success-rate benchmarks on held-out episodes (manipulation, OGBench mazes) -------------------------------------
TIMING_COLUMNS = [("plan ms / decision", col_mean_se("plan_ms_per_decision", 2)),
                  ("plan s / episode", col_mean_se("plan_s_per_episode", 2)),
                  ("episodes / min", col_mean_se("episodes_per_minute", 0))]


def check_names(key: str, given, allowed) -> None:
    """An ArgError naming the values of the list argument `key` that are not among `allowed`."""
    bad = [v for v in given if v not in allowed]
    if bad:
        raise ArgError(f"error: unknown {key} {bad}; choose from {sorted(allowed)}")


def tasks_and_checkpoints(args: Args, methods: dict, prefixes: Sequence[str], kind: dict) -> tuple[dict, dict]:
    """({env: Task}, {env: {kind: checkpoint or None}}) for `args.envs`, after checking `args.methods` against
    `methods`; a checkpoint comes from `<prefix><env>=` (`prefixes`, mapped to kinds by `kind`), else the task's
    shipped one."""
    check_names("methods", args.methods, methods)
    tasks = {env: task_of(env) for env in args.envs}
    given = {prefix: prefixed(args, prefix) for prefix in prefixes}
    found = {env: {kind[p]: default_checkpoint(task, given[p].get(env), kind[p]) for p in prefixes}
             for env, task in tasks.items()}
    return tasks, found


def run_methods(script: str, args: Args, methods: dict, prefixes: Sequence[str], kind: dict,
                build: Callable) -> tuple[dict, list[dict], str]:
    """Evaluate every method of `args.methods` on every task of `args.envs` for `args.seeds` seeds of `args.episodes`
    held-out episodes (env seeds `args.first_seed + s * episodes ...`, the same for every method); one row each in
    `benchmarks/results/<script>.jsonl`, with the planning time per decision and per episode. `methods`: name ->
    (planner, keywords, the checkpoint kinds it needs), a checkpoint coming from `tasks_and_checkpoints` (a method
    missing one is skipped with a note naming the `prefixes` key that supplies it); `build(method, task, checkpoints,
    device)` makes the controller, which runs in its own goal mode (`Controller.goal`). Returns ({env: Task}, rows, the
    command line)."""
    tasks, found = tasks_and_checkpoints(args, methods, prefixes, kind)
    command = print_command()
    device = resolve_device(args.device)
    results = Results(script, args, command)
    rows = []
    for env, task in tasks.items():
        for method in args.methods:
            missing = [n for n in methods[method][2] if found[env][n] is None]
            if missing:
                print(f"note: {env}: {method} skipped, no {missing[0]} checkpoint; pass "
                      f"{next(p for p in prefixes if kind[p] == missing[0])}{env}=PATH", flush=True)
                continue
            controller = as_controller(build(method, task, found[env], device))
            settings = controller.settings_record()
            checkpoint = controller.checkpoint_path
            for seed in range(args.seeds):
                first = args.first_seed + seed * args.episodes
                before = controller.plan_seconds
                res = run_episodes(controller, task, episodes=args.episodes, seed=first,
                                   batch=args.batch or args.episodes, progress=False)
                s = res.summary(task)
                spent = controller.plan_seconds - before
                ms = 1000 * spent / (args.episodes * task.max_episode_steps)
                rows.append(results.add({"env": env, "method": method, "seed": seed, "first_env_seed": first,
                                         "device": device, "checkpoint": checkpoint, "settings": settings, **s,
                                         "plan_ms_per_decision": ms, "plan_s_per_episode": spent / args.episodes,
                                         "episode_success": [e.success for e in res.episodes]}, device))
                print(f"  {env} {method:16s} seed {seed}: success {s['score_mean']:5.1f} %  plan {ms:.2f} ms/step  "
                      f"{s['episodes_per_minute']:.0f} ep/min", flush=True)
    return tasks, rows, command
