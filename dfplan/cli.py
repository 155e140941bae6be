"""Console entry points: thin mains over `dfplan.run` and the task modules.

Arguments are Hydra overrides (`key=value`, `group=option`, `+key=value`) composed against the YAML configs in
`dfplan.configs`; `--help` prints what a command does, its keys with their defaults, and an example; `-m`
(multirun) goes through Hydra itself. Every user mistake (unknown key, bad value, missing file) is one line
`error: ...` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
import time
from importlib import resources

import hydra
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from dfplan import run
from dfplan.data import load_minari
from dfplan.envs.recipes import dataset_exists
from dfplan.errors import UserError, check_int, choices_hint
from dfplan.settings import OVERRIDE_KEYS
from dfplan.tasks import get_task, task_names
from dfplan.tasks.pointmaze import custom_task
from dfplan.training import check_config, train

CONFIGS = "dfplan.configs"
HYDRA_FLAGS = ("-m", "--multirun", "--cfg", "-c", "--info", "--resolve", "--package", "-p", "--shell-completion",
               "--run", "-r", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")


# --- argument handling ----------------------------------------------------------------------------
def _yaml_text(config_name: str) -> str:
    return (resources.files(CONFIGS) / f"{config_name}.yaml").read_text()


def help_text(command: str, config_name: str) -> str:
    """What the command does, its keys with defaults and comments (from the YAML itself), and an example."""
    lines = _yaml_text(config_name).splitlines()
    about = [ln[2:] for ln in lines if ln.startswith("# ") and not ln.startswith("# example:")]
    example = next((ln[len("# example: "):] for ln in lines if ln.startswith("# example: ")), command)
    keys, in_body = [], False
    for ln in lines:
        if ln.startswith("hydra:"):
            break
        if ln and not ln.startswith((" ", "-", "#", "defaults:")):
            in_body = True
        if in_body and ln.strip():
            keys.append("  " + ln)
    out = [about[0].split(": ", 1)[-1] if about else command, "", f"usage: {command} [key=value ...]", "",
           "keys (default, meaning):", *keys]
    groups = _groups(config_name)
    if groups:
        out += ["", "config groups (group=option; their keys as group.key=value):"]
        out += [f"  {g}: {', '.join(opts)}" for g, opts in groups.items()]
    return "\n".join(out + ["", f"example: {example}"])


def _groups(config_name: str) -> dict[str, list[str]]:
    """Config groups the command's defaults list uses (train: model, train)."""
    cfg = OmegaConf.create(_yaml_text(config_name))
    names = [next(iter(d)) for d in cfg.get("defaults", [])
             if isinstance(d, DictConfig) and "override" not in next(iter(d))]
    root = resources.files(CONFIGS)
    return {g: sorted(p.name[:-5] for p in (root / g).iterdir() if p.name.endswith(".yaml")) for g in names}


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """The composed config, with Hydra's composition errors turned into one-line UserErrors."""
    for arg in overrides:
        if "=" not in arg:
            raise UserError(f"arguments are key=value, got {arg!r}; see --help")
    base = _plain(config_name, [])
    try:
        with initialize_config_module(config_module=CONFIGS, version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except HydraException as err:
        raise UserError(_composition_message(str(err), overrides, base)) from None
    _check_keys(cfg, base, config_name)
    return cfg


def _plain(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module=CONFIGS, version_base=None):
        return hydra_compose(config_name=config_name, overrides=overrides)


def _composition_message(message: str, overrides: list[str], base: DictConfig) -> str:
    first = message.strip().splitlines()[0]
    if "Could not override" in first or "not in struct" in message:
        key = first.split("'")[1] if "'" in first else first
        keys = _flat_keys(base)
        return f"unknown key {key!r}{choices_hint(key, keys)}; keys: {', '.join(keys)}"
    if "Could not find" in first or "Could not load" in first:
        return f"{first.rstrip('.')}; see --help for the config groups and their options"
    return first


def _flat_keys(cfg, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        if isinstance(v, DictConfig):
            out += _flat_keys(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def _check_keys(cfg: DictConfig, base: DictConfig, config_name: str) -> None:
    """Refuse keys the command does not know (e.g. `+episdes=5`) and values of the wrong type (`episodes=abc`)."""
    groups = set(_groups(config_name))
    for key, value in cfg.items():
        if key in groups:
            continue  # a group's options may have other keys than the default option; their code checks them
        if key not in base:
            raise UserError(f"unknown key {key!r}{choices_hint(key, list(base))}; keys: {', '.join(base)}")
        _check_type(key, value, base[key])


def _check_type(key: str, value, default) -> None:
    if value is None or default is None:
        return
    if isinstance(default, DictConfig):  # a mapping of settings (train's `planner`): its code checks the keys
        ok, kind = isinstance(value, DictConfig), "a mapping of settings, e.g. +planner.guidance_scale=8"
    elif isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    else:
        ok, kind = isinstance(value, (str, int, float)) and not isinstance(value, bool), "a string"
    if not ok:
        raise UserError(f"{key}={value!r} must be {kind} (default: {default})")


def main_for(command: str, config_name: str, body):
    """A console-script main: `--help`, composition, validation, then `body(cfg)`; UserErrors exit 2."""

    def main(argv: list[str] | None = None) -> None:
        argv = list(sys.argv[1:] if argv is None else argv)
        if any(a in ("-h", "--help") for a in argv):
            print(help_text(command, config_name))
            return
        if any(a.split("=", 1)[0] in HYDRA_FLAGS for a in argv):
            return _hydra_main(config_name, body)()
        try:
            body(compose(config_name, argv))
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    main.__doc__ = f"{command}: see `{command} --help`."
    return main


def _hydra_main(config_name: str, body):
    @hydra.main(config_path=f"pkg://{CONFIGS}", config_name=config_name, version_base=None)
    def hydra_main(cfg: DictConfig) -> None:
        try:
            body(cfg)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return hydra_main


def rounded(x, digits: int = 4):
    """Floats rounded for printing (JSON keeps full precision nowhere a person reads it)."""
    if isinstance(x, float):
        return round(x, digits) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    return x


def _settings(cfg: DictConfig, passed_by_name=()) -> dict:
    """The DF settings (`dfplan.settings.OVERRIDE_KEYS`) that the command's config holds and the user set, less those
    the command passes by name."""
    return {k: cfg[k] for k in OVERRIDE_KEYS if k in cfg and k not in passed_by_name and cfg[k] is not None}


def _data_options(cfg: DictConfig) -> dict:
    """The dataset-recipe options (every task's `Task.data_options`) that the user set."""
    names = dict.fromkeys(o for name in task_names() for o in get_task(name).data_options)
    return {k: cfg[k] for k in names if k in cfg and cfg[k] is not None}


# --- the commands ------------------------------------------------------------------------------------
def run_data(cfg: DictConfig) -> None:
    if cfg.maze_map is not None:
        if cfg.env in task_names():
            raise UserError(f"env={cfg.env} is a built-in task; give your maze its own name, e.g. env=my-maze")
        task = custom_task(cfg.env, OmegaConf.to_container(cfg.maze_map) if not isinstance(cfg.maze_map, str)
                           else cfg.maze_map, goal_cell=cfg.goal_cell, max_episode_steps=cfg.max_episode_steps)
    else:
        task = get_task(cfg.env)
    options = _data_options(cfg)
    unused = set(options) - set(task.data_options)
    if unused:
        raise UserError(f"{sorted(unused)[0]}= does not apply to {task.name}; its data keys: {list(task.data_options)}")
    dataset_id = cfg.dataset_id or task.default_dataset_id(**options)
    t0 = time.perf_counter()
    ds = task.generate_dataset(dataset_id, seed=cfg.seed, overwrite=cfg.overwrite, progress=cfg.progress, **options)
    seconds = time.perf_counter() - t0
    meta = ds.storage.metadata
    print(f"wrote {dataset_id}: {ds.total_steps} steps, {ds.total_episodes} episodes in {seconds:.1f} s "
          f"({ds.total_steps / seconds:,.0f} steps/s); ref_min_score={meta['ref_min_score']:.2f} "
          f"ref_max_score={meta['ref_max_score']:.2f}; at {ds.spec.data_path}")


def _import_npz(task, path: str) -> str:
    """dataset=<file>.npz: import it once as a Minari dataset (the task's recipe for such files); its id."""
    if "npz" not in task.data_options:
        raise UserError(f"dataset={path}: {task.name} does not read .npz files; give a Minari dataset id")
    dataset_id = task.default_dataset_id(npz=path)
    if not dataset_exists(dataset_id):
        print(f"importing {path} as Minari dataset {dataset_id}", flush=True)
        task.generate_dataset(dataset_id, seed=0, overwrite=False, progress=True, npz=path)
    return dataset_id


def run_train(cfg: DictConfig) -> None:
    check_config(cfg)
    npz = str(cfg.dataset) if str(cfg.dataset).endswith(".npz") else None
    task = get_task(cfg.env, dataset_id=None if npz else cfg.dataset)
    with open_dict(cfg):
        cfg.dataset = _import_npz(task, npz) if npz else (cfg.dataset or task.default_dataset_id())
    why = task.dataset_mismatch(load_minari(cfg.dataset))
    if why:
        raise UserError(f"dataset {cfg.dataset} was not made for env={task.name}: {why}; pass the env it was made for")
    train(cfg, task=task)


def run_eval(cfg: DictConfig) -> None:
    run.check_writable(cfg.results)
    result = run.evaluate(cfg.env, planner=cfg.planner, checkpoint=cfg.checkpoint, variant=cfg.variant,
                          episodes=cfg.episodes, goal=cfg.goal, seed=cfg.seed, batch=cfg.batch, device=cfg.device,
                          max_episode_steps=cfg.max_episode_steps, plot=cfg.plot, video=cfg.video,
                          progress=cfg.progress, allow_task_mismatch=cfg.allow_task_mismatch,
                          replan_every=cfg.replan_every, video_source=cfg.video_source,
                          **_settings(cfg, passed_by_name=("replan_every", "goal")))
    line = json.dumps(rounded(result.summary))
    print(result.line)
    if cfg.results:
        with open(cfg.results, "a") as f:
            f.write(line + "\n")
    print(line)


def run_demo(cfg: DictConfig) -> None:
    check_int("episodes", cfg.episodes, 1)
    print(f"dfplan demo: the DF MPC controller on {cfg.env}, {cfg.episodes} episodes, shipped checkpoint")
    result = run.evaluate(cfg.env, episodes=cfg.episodes, goal=cfg.goal, seed=cfg.seed, batch=cfg.episodes,
                          variant=cfg.variant, device=cfg.device, plot=cfg.out, progress=False)
    s = result.summary
    scores = None
    if "normalized_score_mean" in s:
        scores = result.task.normalized(result.result.episodes, *s["ref_scores"])
    for i, ep in enumerate(result.result.episodes):
        score = f"normalized score {scores[i]:6.1f}" if scores is not None else f"success {ep.success}"
        ttg = "never" if ep.time_to_goal is None else f"step {ep.time_to_goal}"
        print(f"episode seed={ep.seed}: {score}  reached goal: {ttg}")
    print(result.line + f"; saved {cfg.out}")


def run_plan(cfg: DictConfig) -> None:
    s = run.plan_once(cfg.env, checkpoint=cfg.checkpoint, variant=cfg.variant, starts=cfg.starts, goal=cfg.goal,
                      seed=cfg.seed, horizon=cfg.horizon, device=cfg.device, out=cfg.out,
                      **_settings(cfg, passed_by_name=("horizon", "goal")))
    extra = ""
    if "in_wall" in s:
        extra = f"; planned positions in walls {s['in_wall']:.1%}, plans through a wall {s['through_wall']:.0%}"
    reached = f" (reached {s['reached']:.0%})" if "reached" in s else ""
    print(f"{s['env']}: one open-loop plan of {s['steps']} steps from each of {s['plans']} starts in {s['ms']:.0f} ms "
          f"({s['objective']} guidance; the controller replans as it goes); "
          f"end distance to goal {s['end_distance']:.2f}{reached}{extra}; open-loop dynamics error "
          f"{s['dynamics_error']:.3f} (first 32 steps, executing the plan's own actions); saved {cfg.out}")


data_main = main_for("dfplan-data", "data", run_data)
train_main = main_for("dfplan-train", "train", run_train)
eval_main = main_for("dfplan-eval", "eval", run_eval)
demo_main = main_for("dfplan-demo", "demo", run_demo)
plan_main = main_for("dfplan-plan", "plan", run_plan)
