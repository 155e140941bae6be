"""Training throughput of the real training-loop pieces for the shipped presets.

    python benchmarks/train_throughput.py env=pointmaze-umaze device=cpu      # the task's own dataset
    python benchmarks/train_throughput.py dataset=dfplan/pointmaze/umaze-dwell100-v0
    python benchmarks/train_throughput.py quick=true threads=1            # smoke test, < 1 minute on 2 cores

The data: `dataset` (any Minari id), else the task's own (`dfplan.tasks.get_task(env).default_dataset_id()`,
what `dfplan-train env=...` trains on).
Presets (composed with Hydra's compose API from `dfplan.configs`, exactly as `dfplan-train` would):
  df        model=df_rnn   train=cpu            (the DF CPU preset)
  diffuser  model=diffuser train=diffuser_cpu   (the Diffuser CPU preset)
  df-gpu    model=df_rnn   train=gpu            (the paper-scale DF preset; batch 2048, meant for CUDA)
  diffuser-gpu model=diffuser train=diffuser_gpu (the Diffuser GPU preset; batch 128)
Each repeat builds the model (`dfplan.registry.build_model`), its EMA copy and AdamW, then times `steps` optimizer
steps after `warmup` untimed ones: learning-rate schedule, `WindowSampler.sample`, autocast forward (bf16 on CUDA
when the preset says amp), backward, grad clipping, optimizer step, EMA update -- the body of
`dfplan.training.train` without logging, validation and checkpoints. Reports steps/s, env steps/s
(`batch.mask.sum()`, as the training log counts them), tokens/s (env steps / frame_stack for DF; Diffuser has one
position per env step), seconds per 1k steps, and the share of time spent sampling windows.
`overrides=a=b;c=d` adds Hydra overrides to every preset (`;`-separated, e.g. `overrides=train.batch_size=64`).
"""

from __future__ import annotations

import copy
import os
import sys
import time

import numpy as np
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.errors import HydraException

from dfplan.data import DatasetNotFoundError, Normalizer, WindowSampler, load_runs
from dfplan.registry import build_model
from dfplan.training import ema_update, lr_at, model_kwargs

import common

PRESETS = {"df": ["model=df_rnn", "train=cpu"], "diffuser": ["model=diffuser", "train=diffuser_cpu"],
           "df-gpu": ["model=df_rnn", "train=gpu"], "diffuser-gpu": ["model=diffuser", "train=diffuser_gpu"]}
DEFAULTS = {
    "env": "pointmaze-umaze",  # task (its default dataset, when `dataset` is not given)
    "dataset": None,  # any Minari id under MINARI_DATASETS_PATH; default: the task's
    "presets": ["df", "diffuser"],
    "device": "cpu",  # cpu | cuda | auto
    "steps": 50,
    "warmup": 5,
    "repeats": 3,
    "overrides": "",
    "seed": 0,
}
QUICK = {"steps": 6, "warmup": 1, "repeats": 2}


def compose(preset: str, env: str, dataset: str, extra: list[str]):
    with initialize_config_module(config_module="dfplan.configs", version_base=None):
        return hydra_compose(config_name="train",
                             overrides=PRESETS[preset] + [f"env={env}", f"dataset={dataset}"] + extra)


def time_preset(cfg, splits, device: torch.device, steps: int, warmup: int, seed: int) -> dict:
    tc = cfg.train
    torch.manual_seed(seed)
    name, kwargs = model_kwargs(cfg, splits.obs_dim, splits.act_dim)
    model = build_model(name, **kwargs).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    windows = WindowSampler(splits.train, tc.window_steps, splits.normalizer)
    rng = np.random.default_rng(seed)
    amp = device.type == "cuda" and tc.amp
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False)
    sample_s, env_steps, losses = 0.0, 0, []
    for step in range(warmup + steps):
        if step == warmup:
            common.sync(device)
            t0, sample_s, env_steps = time.perf_counter(), 0.0, 0
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc.lr, tc.warmup_steps, tc.steps, schedule=tc.lr_schedule)
        ts = time.perf_counter()
        batch = windows.sample(tc.batch_size, rng).to(device)
        sample_s += time.perf_counter() - ts
        with autocast:
            loss = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        ema_update(ema, model, tc.ema_decay if step >= tc.ema_start else 0.0)
        env_steps += int(batch.mask.sum())
        losses.append(loss.item())  # the training loop reads the loss every step too (.item() syncs)
    common.sync(device)
    seconds = time.perf_counter() - t0
    fs = int(cfg.model.get("frame_stack", 1)) if name == "df_rnn" else 1
    return {"model": name, "params": sum(p.numel() for p in model.parameters()), "batch_size": int(tc.batch_size),
            "window_steps": int(tc.window_steps), "amp": bool(amp), "steps": steps, "seconds": seconds,
            "steps_per_s": steps / seconds, "env_steps_per_s": env_steps / seconds,
            "tokens_per_s": env_steps / fs / seconds, "s_per_1k_steps": 1000 * seconds / steps,
            "sampling_share": sample_s / seconds, "last_loss": losses[-1]}


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__)
    common.check_names("presets", args.presets, PRESETS)
    task = common.task_of(args.env)
    args["dataset"] = args.dataset or task.default_dataset_id()
    command = common.print_command()

    extra = [o for o in args.overrides.split(";") if o]
    device = torch.device(common.resolve_device(args.device))
    print(f"MINARI_DATASETS_PATH={os.environ.get('MINARI_DATASETS_PATH', '(unset: ~/.minari/datasets)')}")


    try:
        cfgs = {p: compose(p, task.name, args.dataset, extra) for p in args.presets}
    except HydraException as err:
        raise common.ArgError(f"error: cannot compose the presets with overrides {extra}: {err}") from err
    t0 = time.perf_counter()
    first = cfgs[args.presets[0]].train
    try:
        base = load_runs(args.dataset, val_fraction=first.val_fraction, seed=0, normalizer_mode=first.normalizer)
    except DatasetNotFoundError as err:
        raise common.ArgError(f"error: {err}") from err
    load_s = time.perf_counter() - t0
    print(f"loaded {args.dataset} ({base.n_episodes} episodes, {sum(len(r) for r in base.train)} train steps) "
          f"in {load_s:.1f} s", flush=True)
    train_obs = np.concatenate([r.obs for r in base.train])
    train_act = np.concatenate([r.actions for r in base.train])

    results = common.Results("train_throughput", args, command)
    rows = []
    for preset, cfg in cfgs.items():
        splits = copy.copy(base)
        if cfg.train.normalizer != base.normalizer.mode:  # same data, the preset's normalizer (as load_runs fits it)
            splits.normalizer = Normalizer.fit(train_obs, train_act, mode=cfg.train.normalizer)
        for rep in range(args.repeats):
            m = time_preset(cfg, splits, device, args.steps, args.warmup, args.seed + rep)
            row = results.add({"env": task.name, "dataset": args.dataset, "method": preset, "seed": rep,
                               "device": str(device), "preset": PRESETS[preset] + extra, "load_seconds": load_s, **m},
                              str(device))
            rows.append(row)
            print(f"  {preset} repeat {rep}: {m['steps_per_s']:.2f} steps/s, {m['env_steps_per_s']:,.0f} env steps/s "
                  f"(sampling {m['sampling_share']:.0%})", flush=True)

    table = common.aggregate_table(rows, ["method", "model", "device", "batch_size", "window_steps"], [
        ("steps/s", common.col_mean_se("steps_per_s", 2)),
        ("env steps/s", common.col_mean_se("env_steps_per_s", 0)),
        ("tokens/s", common.col_mean_se("tokens_per_s", 0)),
        ("s per 1k steps", common.col_mean_se("s_per_1k_steps", 1)),
        ("window sampling share", common.col_mean_se("sampling_share", 0, pct=True)),
        ("params", lambda g: f"{g[0]['params']:,}"),
    ], key_headers=["preset", "model", "device", "batch", "window (env steps)"])
    section = common.section(
        f"Training throughput on {args.dataset}: {args.steps} steps after {args.warmup} warm-up, mean ± s.e. over "
        f"{args.repeats} repeats, torch threads {torch.get_num_threads()}", table, command)
    print()
    print(section)
    print(f"appended {len(results.rows)} rows to {results.path}")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
