"""Score against training steps: every snapshot of a run evaluated closed-loop on the same episodes, beside the run's
validation loss, so you can see whether more training still helps.

    dfplan-train env=pointmaze-medium dataset=dfplan/pointmaze/medium-dwell100-v0 train=cpu_long out=runs/medium-long
    python benchmarks/training_curve.py run=runs/medium-long like=pointmaze-medium-dwell baseline=pointmaze-medium-dwell
        plot=curve.png

Snapshots are the EMA weights a run writes every `train.snapshot_every` steps (`runs/<run>/snapshots/step-*.pt`;
the `train=cpu_long` preset writes one every 4,000 steps). A DF snapshot is planned with the settings stored in
`like=` (a shipped name or a checkpoint; default: the task's shipped DF model), so the curve measures the weights
alone; a Diffuser snapshot with Diffuser's own. `baseline=` (a shipped name or a checkpoint, e.g. the model the run
should beat) is measured once on the same episodes with its own settings: a last table line and a dashed line.
Each snapshot: `seeds` x `episodes` episodes from env seed `first_seed` (default 5000+: tuning episodes, which the
held-out checks at 1000+ never use — pick a snapshot here, then check it there). Snapshots already in the results
file with the same settings are skipped, so re-running it as training goes on measures only the new ones. Prints a
Markdown table, writes one JSON line per snapshot and seed (`benchmarks/results/training_curve.jsonl`) and, with
`plot=`, a figure of the score (mean ± s.e.) and validation loss against steps.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
import textwrap
from pathlib import Path

from dfplan.checkpoint import load_checkpoint
from dfplan.controllers import make_controller
from dfplan.evaluation import run_episodes
from dfplan.registry import load_planner
from dfplan.run import reference_scores, resolve_task

import common

DEFAULTS = {"run": "", "env": None, "like": None, "baseline": None, "every": 0, "seeds": 3, "episodes": 20,
            "first_seed": 5000, "goal": "fixed", "device": "auto", "plot": None, "title": None}
QUICK = {"seeds": 1, "episodes": 2}
STEP = re.compile(r"step-(\d+)\.pt$")


def snapshots(run: Path, every: int = 0) -> list[tuple[int, Path]]:
    """(step, path) of the run's snapshots in step order; `every` > 0 keeps the steps it divides."""
    found = sorted((int(m.group(1)), p) for p in (run / "snapshots").glob("step-*.pt") if (m := STEP.search(p.name)))
    return [(s, p) for s, p in found if not every or s % every == 0]


def validation_losses(run: Path) -> dict[int, float]:
    """{step: validation loss} from the run's log.csv (empty when it has none)."""
    log = run / "log.csv"
    if not log.is_file():
        return {}
    with open(log, newline="") as f:  # long format: step,key,value
        return {int(r["step"]): float(r["value"]) for r in csv.DictReader(f) if r["key"] == "val_loss"}


def read_rows(path: Path) -> list[dict]:
    """Every row of a JSON-lines results file (none when it does not exist yet)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sha256_16(data: str | bytes) -> str:
    """The first 16 hex digits of the SHA-256 of `data` (a cache key)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]


def matching(rows: list[dict], key: dict) -> list[dict]:
    """The rows for the same run (or baseline) and evaluation settings."""
    return [r for r in rows if all(r.get(k) == v for k, v in key.items())]


def plot_curve(rows: list[dict], path: str, title: str, base_rows: list[dict], base_name: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = common.group_rows(sorted(rows, key=lambda r: r["step"]), ["step"])
    steps = [g[0][0] for g in groups]
    stats = [common.mean_se(r["score_mean"] for r in g[1]) for g in groups]
    mean = [m for m, _, _ in stats]
    se = [s or 0.0 for _, s, _ in stats]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True, height_ratios=[2, 1])
    top.fill_between(steps, [m - s for m, s in zip(mean, se)], [m + s for m, s in zip(mean, se)], alpha=0.25)
    top.plot(steps, mean, "o-")
    if base_rows:
        top.axhline(common.mean_se(r["score_mean"] for r in base_rows)[0], ls="--", color="tab:red", label=base_name)
        top.legend(loc="lower right", fontsize=8)
    top.set_ylabel("normalized score (100 = expert)")
    top.set_title(textwrap.fill(title, 90), fontsize=8)
    top.grid(alpha=0.3)
    val = [(r["step"], r["val_loss"]) for _, g in groups for r in g[:1] if r.get("val_loss") is not None]
    if val:
        bottom.plot(*zip(*val), "s-", color="tab:gray")
    bottom.set_ylabel("validation loss (EMA)")
    bottom.set_xlabel("training steps")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(controller, task, args, results, row: dict, device: str, label: str) -> None:
    """`args.seeds` x `args.episodes` episodes of `controller`, one results row per seed."""
    ref = reference_scores(task, controller)
    for seed in range(args.seeds):
        first = args.first_seed + seed * args.episodes
        res = run_episodes(controller, task, goal=args.goal, episodes=args.episodes, seed=first, batch=args.episodes,
                           progress=False)
        s = res.summary(task, ref)
        results.add({**row, "seed": seed, "first_env_seed": first, "device": device, **s}, device)
        print(f"  {label} seed {seed}: score {s['score_mean']:6.1f}  success {s['success_rate']:.0%}", flush=True)


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__)
    run = Path(args.run)
    if not args.run or not run.is_dir():
        raise common.ArgError(f"error: run={args.run!r} is not a run folder; pass the out= of a dfplan-train run")
    found = snapshots(run, args.every)
    if not found:
        raise common.ArgError(f"error: {run}/snapshots holds no step-*.pt; train with train.snapshot_every=N "
                              f"(train=cpu_long writes one every 4,000 steps)")
    command = common.print_command()

    task = resolve_task(args.env, str(found[0][1]))
    planner = "diffuser" if load_checkpoint(found[0][1]).get("model_type") == "diffuser" else "df"
    like = common.default_checkpoint(task, args.like) if planner == "df" else None
    baseline = common.default_checkpoint(task, args.baseline, planner) if args.baseline else None
    settings = load_planner(like, device="cpu").settings.flat() if like else {}
    device = common.resolve_device(args.device)
    results = common.Results("training_curve", args, command)
    episodes = {"env": task.name, "episodes": args.episodes, "first_env_seed_0": args.first_seed, "goal": args.goal}
    # Keyed on the settings themselves, not the file they came from: a copied file shares its rows, a shipped name
    # whose settings were re-tuned does not.
    key = {"run": str(run.resolve()), "settings_sha256": sha256_16(json.dumps(settings, sort_keys=True)), **episodes}
    before, val = read_rows(results.path), validation_losses(run)
    done = {r["step"] for r in matching(before, key)}
    for step, path in found:
        if step not in done:
            controller = make_controller(planner, task, path, device=device, **settings)
            measure(controller, task, args, results, {**key, "settings_from": str(like) if like else None, "step": step,
                                                      "snapshot": str(path), "planner": planner,
                                                      "val_loss": val.get(step)}, device, f"step {step:7d}")
    base_key = {"baseline": str(baseline), **episodes}  # + its content: a shipped name can point at a newer model
    if baseline is not None:
        base_key["baseline_sha256"] = sha256_16(baseline.read_bytes())
    if baseline is not None and not matching(before, base_key):  # with its own stored settings
        measure(make_controller(planner, task, baseline, device=device), task, args, results,
                {**base_key, "planner": planner}, device, baseline.stem)
    every_row = before + results.rows  # what the file held, plus what this run appended
    rows = [{**r, "val_loss": val.get(r["step"], r.get("val_loss"))} for r in matching(every_row, key)]
    base_rows = matching(every_row, base_key) if baseline is not None else []
    columns = [common.col_mean_se("score_mean", 1), common.col_mean_se("success_rate", 0, pct=True)]
    lines = [[step, *(c(group) for c in columns),
              f"{group[0]['val_loss']:.4f}" if group[0].get("val_loss") is not None else "–"]
             for (step,), group in common.group_rows(sorted(rows, key=lambda r: r["step"]), ["step"])]
    if base_rows:
        lines.append([f"{baseline.stem} (baseline)", *(c(base_rows) for c in columns), "–"])
    table = common.markdown_table(["training steps", "normalized score", "success", "validation loss"], lines)
    title = args.title or (f"{task.name}, {run.name}: {args.seeds} x {args.episodes} episodes per snapshot, env seeds "
                           f"{args.first_seed}+, settings of {Path(str(like)).stem if like else planner}")
    print()
    print(common.section(title, table, command))
    print(f"results in {results.path}")
    if args.plot:
        plot_curve(rows, args.plot, title, base_rows, baseline.stem if baseline is not None else None)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
