"""One readable training loop for every model type: AdamW + warm-up, grad clipping, EMA, autocast on CUDA,
periodic validation, CSV/TensorBoard logs, atomic checkpoints, kill-and-resume, and DDP under torchrun."""

from __future__ import annotations

import copy
import csv
import dataclasses
import fcntl
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from dfplan.checkpoint import load_checkpoint, remove_temp_files, resolve_checkpoint, save_checkpoint
from dfplan.data import Normalizer, WindowSampler, load_runs
from dfplan.devices import resolve_device
from dfplan.df.model import CELLS
from dfplan.errors import UserError, check_choice, check_float, check_int
from dfplan.registry import build_model, complete_config
from dfplan.settings import resolve_settings


def model_kwargs(cfg: DictConfig, obs_dim: int, act_dim: int, task=None) -> tuple[str, dict]:
    """The model type and its constructor keywords (dimensions come from the data; a low-level policy's unset
    `goal_dims` from the task's plan dims)."""
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    name = kwargs.pop("name")
    if "goal_dims" in kwargs and kwargs["goal_dims"] is None:
        kwargs["goal_dims"] = list(task.plan_dims) if task is not None else []
    return name, {**kwargs, "obs_dim": obs_dim, "act_dim": act_dim}


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)


LR_SCHEDULES = ("cosine", "constant")


def lr_at(step: int, base_lr: float, warmup: int, total: int, min_ratio: float = 0.1,
          schedule: str = "cosine") -> float:
    """Linear warm-up, then cosine decay to `min_ratio * base_lr` at `total` (or, `constant`, `base_lr` for good:
    a run that can be extended by any number of steps without the rate jumping back up)."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class _Logger:
    """CSV always; TensorBoard when the package is installed. `start_step`: the step the run starts from (the
    resumed checkpoint's, or 0): what an earlier, killed run logged after it is dropped, so no step repeats."""

    def __init__(self, out: Path, enabled: bool, start_step: int = 0):
        self.enabled = enabled
        self.path = out / "log.csv"
        self.tb = None
        if enabled:
            truncate_log(self.path, start_step)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"), purge_step=start_step + 1)
            except ImportError:
                pass

    def log(self, step: int, **values) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "key", "value"])
            for key, value in values.items():
                writer.writerow([step, key, f"{value:.6g}"])
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, step)
            self.tb.flush()


def _step_of(row: list[str]) -> int | None:
    try:
        return int(row[0]) if len(row) == 3 else None
    except ValueError:
        return None


def truncate_log(path: Path, last_step: int) -> None:
    """Keep the rows of a log.csv up to `last_step` (the checkpoint a run continues from); rows after it, and a
    row cut short by a kill, go. Rewritten through a temp file + rename, so a kill here loses nothing."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    body = rows[1:] if rows and rows[0] == ["step", "key", "value"] else rows
    keep = [r for r in body if _step_of(r) is not None and _step_of(r) <= last_step]
    if len(keep) == len(body) and body is not rows:
        return  # nothing to drop
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([["step", "key", "value"], *keep])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunLock:
    """An exclusive `fcntl.flock` on `out/.lock` while a run trains into `out`, so two runs never write the same
    checkpoints. The kernel drops the lock when its process ends, however it ends: a killed run leaves the file
    but never a stale lock."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise UserError(f"{self.path.parent} is in use by another training run (pid {holder or '?'}); wait for "
                            f"it to end, or choose another out=") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # who holds it, for the message above
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def open_run_folder(out: Path) -> RunLock:
    """Create `out`, check it is writable and lock it (UserErrors, before any data is loaded); then clear the temp
    files that writes killed mid-way left there (nobody else writes into a locked folder)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
        lock = RunLock(out).acquire()
    except OSError as err:
        raise UserError(f"out={out} is not a writable folder ({type(err).__name__}: {err.strerror or err}); "
                        f"choose another out=") from err
    removed = remove_temp_files(out, ("last.pt", "final.pt", "log.csv"))
    if removed:
        print(f"removed {len(removed)} temp file(s) left in {out} by a killed write")
    return lock


def check_same_model(ckpt: dict, cfg: DictConfig, path: Path, flag: str) -> None:
    """`resume=true` continues only the same model on the same data, `init=` starts only the same model (normalized
    the same way) from the weights in `path`: anything else would load weights that mean something else (or fail on
    shapes half-way), or mix two runs in one folder."""
    asked = OmegaConf.to_container(cfg.model, resolve=True)
    asked_type = asked.pop("name")
    saved_train = (ckpt.get("config") or {}).get("train") or {}
    pairs = [("model.name", ckpt.get("model_type"), asked_type),
             ("train.normalizer", saved_train.get("normalizer"), cfg.train.get("normalizer")),
             ("state_dims", _planned_dims((ckpt.get("config") or {}).get("state_dims")),
              _planned_dims(cfg.get("state_dims")))]
    if flag == "resume=true":
        pairs.insert(0, ("dataset", ckpt.get("dataset_id"), cfg.dataset))
    if ckpt.get("model_config") is not None and ckpt.get("model_type") == asked_type:
        saved, asked = (complete_config(asked_type, c) for c in (ckpt["model_config"], asked))
        pairs += [(f"model.{k}", saved.get(k, "<unset>"), asked.get(k, "<unset>"))
                  for k in sorted(set(saved) | set(asked)) if k not in ("obs_dim", "act_dim")]
    fix = ("a different dataset or model needs its own out=" if flag == "resume=true" else
           "set the model keys as that checkpoint was trained (or train a new model without init=)")
    for key, was, now in pairs:
        if was is not None and was != now:
            raise UserError(f"{flag} but {path} was trained with {key}={was!r} and the config asks for "
                            f"{key}={now!r}; {fix}")


def load_init(cfg: DictConfig) -> tuple[dict, str] | tuple[None, None]:
    """(checkpoint, its path) that `init=` names (a path or a shipped name), checked against the config; (None, None)
    if unset."""
    if not cfg.get("init"):
        return None, None
    path = resolve_checkpoint(cfg.init)
    ckpt = load_checkpoint(path)
    check_same_model(ckpt, cfg, path, f"init={cfg.init}")
    if int(ckpt.get("step", 0)) >= cfg.train.steps:
        raise UserError(f"init={cfg.init} was trained for {ckpt.get('step')} steps and train.steps={cfg.train.steps}: "
                        f"the run counts on from the checkpoint's step, so set train.steps above it")
    return ckpt, str(path)


def _distributed(device: str) -> tuple[int, int]:
    """(rank, world size) under torchrun; NCCL for CUDA training, gloo for CPU training (also on a GPU machine)."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if resolve_device(device).type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def validation_loss(model, sampler: WindowSampler, batches: int, batch_size: int, device, seed: int = 1234) -> float:
    """Mean loss over fixed windows and fixed noise, so values are comparable across steps."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    losses = [model.batch_loss(sampler.sample(batch_size, rng).to(device), generator=gen).item()
              for _ in range(batches)]
    return float(np.mean(losses))


def snapshot_path(out: Path, step: int) -> Path:
    return Path(out) / "snapshots" / f"step-{step:07d}.pt"


def planner_settings(cfg: DictConfig) -> dict | None:
    """The `planner:` entry of the config (DF settings the preset tunes, e.g. `variant=paper`'s), validated, in the
    form a checkpoint stores; None when it sets nothing (the checkpoint then plans with the defaults)."""
    given = cfg.get("planner")
    given = OmegaConf.to_container(given, resolve=True) if given else {}
    if not given:
        return None
    if cfg.model.name != "df_rnn":
        raise UserError(f"planner settings {sorted(given)} are DF settings; model={cfg.model.name} does not take them")
    return resolve_settings(None, **given).as_dict()


def _planned_dims(value):
    """`state_dims=` as given, with its two spellings of "every dim" made one (for comparing runs)."""
    return None if value in (None, "all") else OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def resolve_state_dims(value, task) -> list[int] | None:
    """`state_dims=` as the dims a DF or Diffuser model plans: "all" -> None (the whole observation), "plan" -> the
    task's plan dims (`Task.plan_dims`), "plan_goal" -> those and the dims that hold the goal (`Task.goal_input_dims`),
    or an explicit list."""
    if value in (None, "all"):
        return None
    if value in ("plan", "plan_goal"):
        if task is None:
            raise UserError(f"state_dims={value} needs the task (env=) whose plan dims to take")
        extra = [d for d in task.goal_input_dims if d not in task.plan_dims] if value == "plan_goal" else []
        return [*task.plan_dims, *extra]
    if isinstance(value, str) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise UserError(f"state_dims={value!r} must be all, plan, plan_goal or a list of observation dims, e.g. "
                        f"[0,1,2]")
    return list(value)


def check_config(cfg: DictConfig) -> None:
    """Every value a run could otherwise trip on late (after loading the data, or after training) or silently (an
    untrained model, a division by zero)."""
    tc = cfg.train
    for key in ("steps", "batch_size", "window_steps", "log_every", "val_every", "val_batches", "checkpoint_every"):
        check_int(f"train.{key}", tc[key], 1)
    check_int("train.snapshot_every", tc.snapshot_every, 0)
    check_choice("train.lr_schedule", tc.lr_schedule, LR_SCHEDULES)
    check_float("train.lr", tc.lr, 0.0)
    check_float("train.grad_clip", tc.grad_clip, 0.0)
    if not 0.0 <= tc.val_fraction < 1.0:
        raise UserError(f"train.val_fraction={tc.val_fraction} must be in [0, 1)")
    if "action_weight" in cfg.model:
        check_float("model.action_weight", cfg.model.action_weight, 0.0)
    if "cell" in cfg.model:
        check_choice("model.cell", cfg.model.cell, CELLS)
    fs = cfg.model.get("frame_stack")
    if fs is not None and tc.window_steps % fs:
        raise UserError(f"train.window_steps={tc.window_steps} must be a multiple of model.frame_stack={fs} "
                        f"(whole tokens), e.g. {tc.window_steps // fs * fs or fs}")
    k = cfg.model.get("k")
    if k is not None and check_int("model.k", k, 1) > tc.window_steps:
        raise UserError(f"model.k={k} needs windows of at least k steps; set train.window_steps >= {k}")
    planner_settings(cfg)
    state_dims = _planned_dims(cfg.get("state_dims"))
    if state_dims is not None and cfg.model.name not in ("df_rnn", "diffuser"):
        raise UserError(f"state_dims={state_dims} applies to DF and Diffuser models; model={cfg.model.name} reads "
                        f"the whole state")
    if state_dims is not None and cfg.model.name == "diffuser" and cfg.model.condition_last:
        raise UserError(f"state_dims={state_dims} needs model.condition_last=false: a Diffuser over part of the state "
                        f"takes its goal from the planned state (e.g. the cube tasks' subgoal offsets), not from an "
                        f"inpainted last state")
    check_int("seed", cfg.seed, 0)
    if cfg.get("init") and cfg.resume:
        raise UserError(f"init={cfg.init} starts a new run from a checkpoint's weights and resume=true continues the "
                        f"run in out=; pass one of them")


def train(cfg: DictConfig, task=None) -> Path:
    """Train `cfg.model` on `cfg.dataset` for `cfg.train.steps`; returns the final checkpoint path. `task` (a
    `dfplan.tasks.Task`) is stored in the checkpoint so evaluation knows what the model is for."""
    check_config(cfg)
    rank, world = _distributed(cfg.device)
    device = resolve_device(cfg.device, rank=rank)
    out = Path(cfg.out)
    lock = open_run_folder(out) if rank == 0 else None  # other ranks only read; rank 0 writes everything
    try:
        return _train(cfg, task, rank, world, device, out)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: DictConfig, task, rank: int, world: int, device: torch.device, out: Path) -> Path:
    tc = cfg.train
    last_path = out / "last.pt"
    torch.manual_seed(cfg.seed + rank)

    ckpt = None  # every check of out= and of the checkpoint comes before the (slow) dataset load
    if cfg.resume and not last_path.exists():
        raise UserError(f"resume=true but {last_path} does not exist; check out= (or drop resume=true to start anew)")
    if cfg.resume:
        ckpt = load_checkpoint(last_path)
        check_same_model(ckpt, cfg, last_path, "resume=true")
    elif last_path.exists() and rank == 0:
        raise UserError(f"{out} already holds a run; pass resume=true to continue it or choose another out=")
    init, init_path = load_init(cfg)

    state_dims = resolve_state_dims(cfg.get("state_dims"), task)
    if state_dims is not None and cfg.model.name == "diffuser" and task is not None and not (
            task.goal_input_dims and set(task.goal_input_dims) <= set(state_dims)):
        raise UserError(f"state_dims={cfg.state_dims} leaves a Diffuser no goal: it conditions on the planned state "
                        f"alone, so that state must hold the goal (state_dims=plan_goal on a task whose state carries "
                        f"it, e.g. the OGBench cubes)")
    splits = load_runs(cfg.dataset, val_fraction=tc.val_fraction, seed=cfg.seed, normalizer_mode=tc.normalizer,
                       state_dims=state_dims)
    if init is not None:  # the weights were trained on data normalized this way (another dataset: fine-tuning)
        splits = dataclasses.replace(splits, normalizer=Normalizer.from_state_dict(init["normalizer"]))
    name, kwargs = model_kwargs(cfg, splits.obs_dim, splits.act_dim, task)
    model = build_model(name, **kwargs).to(device)
    ema = copy.deepcopy(model).requires_grad_(False).to(device)  # .to() re-packs the copy's GRU weights for cuDNN
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    step = schedule_start = 0  # schedule_start: where the warm-up and the rate schedule begin (init=: its step)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        step, schedule_start = int(ckpt["step"]), int(ckpt.get("schedule_start", 0))
        init_path = ckpt.get("init")
        del ckpt
        if rank == 0:
            print(f"resumed from {last_path} at step {step}")
    elif init is not None:  # its EMA weights (what it plans with), a fresh optimizer, steps counted on
        model.load_state_dict(init["ema"])
        ema.load_state_dict(init["ema"])
        step = schedule_start = int(init.get("step", 0))
        del init
        if rank == 0:
            print(f"started from the weights of {init_path} (step {step}), a fresh optimizer")

    train_windows = WindowSampler(splits.train, tc.window_steps, splits.normalizer)
    val_windows = WindowSampler(splits.val, tc.window_steps, splits.normalizer) if splits.val else None
    ddp_model = model
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    rng = np.random.default_rng([cfg.seed, rank, step])  # reseeded at resume: new windows, same distribution
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger = _Logger(out, enabled=rank == 0, start_step=step)
    planner = planner_settings(cfg)

    def checkpoint(path: Path, inference: bool = False) -> None:
        """The whole run state (resumable), or with `inference` the EMA weights alone (a snapshot to evaluate)."""
        weights = ({"model": ema.state_dict()} if inference
                   else {"model": model.state_dict(), "optimizer": opt.state_dict()})
        save_checkpoint(path, {
            "model_type": name, "model_config": kwargs, **weights, "ema": ema.state_dict(), "step": step,
            "schedule_start": schedule_start, "init": init_path, "config": resolved, "dataset_id": cfg.dataset,
            "env": cfg.env, "task": task.spec() if task is not None else None,
            "normalizer": splits.normalizer.state_dict(), "ref_scores": list(splits.ref_scores),
            "state_dims": state_dims, "env_obs_dim": splits.env_obs_dim,
            **({"planner": planner} if planner else {}),
        })

    per_rank_batch = max(1, tc.batch_size // world)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and tc.amp
                else torch.autocast("cpu", enabled=False))
    bar = tqdm(total=tc.steps, initial=step, desc=f"train {name}", unit="step", disable=rank != 0 or not tc.progress,
               mininterval=2.0)
    t0, seen_tokens, loss_avg, start_step = time.perf_counter(), 0, None, step
    while step < tc.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step - schedule_start, tc.lr, tc.warmup_steps, tc.steps - schedule_start,
                                schedule=tc.lr_schedule)
        batch = train_windows.sample(per_rank_batch, rng).to(device)
        with autocast:
            loss = ddp_model(batch)  # forward() is the batch loss; through DDP it all-reduces gradients
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip if tc.grad_clip > 0 else math.inf)
        opt.step()
        ema_update(ema, model, tc.ema_decay if step >= tc.ema_start else 0.0)
        step += 1
        seen_tokens += int(batch.mask.sum())
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        bar.update(1)
        if rank == 0 and (step % tc.log_every == 0 or step == tc.steps):
            elapsed = time.perf_counter() - t0
            logger.log(step, loss=loss.item(), loss_ema=loss_avg, grad_norm=float(grad_norm),
                       lr=opt.param_groups[0]["lr"], steps_per_s=(step - start_step) / elapsed,
                       env_steps_per_s=seen_tokens * world / elapsed)
            bar.set_postfix(loss=f"{loss_avg:.4f}")
        if rank == 0 and val_windows is not None and (step % tc.val_every == 0 or step == tc.steps):
            val = validation_loss(ema, val_windows, tc.val_batches, tc.batch_size, device)
            logger.log(step, val_loss=val)
            bar.write(f"step {step}: train loss {loss_avg:.4f}  val loss (EMA) {val:.4f}")
        if rank == 0 and tc.snapshot_every and step % tc.snapshot_every == 0:
            # for score-vs-steps curves (benchmarks/training_curve.py)
            checkpoint(snapshot_path(out, step), inference=True)
        if rank == 0 and (step % tc.checkpoint_every == 0 or step == tc.steps):
            checkpoint(last_path)
    bar.close()
    final = out / "final.pt"
    if rank == 0:
        checkpoint(final)
        print(f"saved {final} after {step} steps ({time.perf_counter() - t0:.0f} s)")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final

