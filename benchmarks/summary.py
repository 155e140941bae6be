"""Side-by-side table of maze results from `benchmarks/maze.py` JSON lines (any number of files, any machines).

    python benchmarks/summary.py benchmarks/results/maze-final.jsonl benchmarks/results/gpu/maze-*.jsonl

One line per env x goal protocol (envs in the order of `dfplan.tasks.task_names()`), one column per method: the
score mean ± s.e. over seeds (the task's score, e.g. PointMaze's normalized score; `normalized_score_mean` in rows
written before the tasks had a score of their own), and the success rate. Rows of other scripts are left out.
When a (env, goal, method, seed) appears more than once, the row made last (its `time`) wins, whichever file holds
it. Prints the commands and machines the rows came from, so every number traces back to a run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dfplan.tasks import task_names

import common

ORDER = ["df-dwell", "df-dwell-memory", "df-dwell-no-memory", "df-dwell-goal-distance", "df-geodesic", "df", "diffuser",
         "diffuser-actions", "diffuser-replan", "expert", "oracle"]


def is_maze_row(row: dict) -> bool:
    return row.get("script", "maze") == "maze"


def load(paths: list[str], keep=is_maze_row) -> list[dict]:
    """The rows `keep` accepts (default: maze.py's), the row made last per (env, goal, method, seed); each row's
    file in `_file`."""
    latest: dict[tuple, dict] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if not keep(row):
                    continue
                row["_file"] = str(path)
                key = (row["env"], row.get("goal"), row.get("method"), row.get("seed"))
                if key not in latest or row.get("time", "") >= latest[key].get("time", ""):
                    latest[key] = row  # ISO times: the run made last wins, whichever file it is in
    return list(latest.values())


def score(row: dict):
    """The row's score: the task's (`score_mean`), else the normalized score of rows from before the tasks."""
    return row.get("score_mean", row.get("normalized_score_mean"))


def cell(group: list[dict]) -> str:
    if not group:
        return "–"
    score_ = common.fmt_mean_se((score(r) for r in group), 1)
    success, _, _ = common.mean_se(r.get("success_rate") for r in group)
    if success is None or all(str(r.get("score_name", "")).startswith("success") for r in group):
        return score_  # the score is the success rate itself
    return f"{score_} ({success:.0%})"


def main(paths: list[str]) -> None:
    if not paths or any(a in ("-h", "--help", "help") for a in paths):
        print(__doc__.strip())
        raise SystemExit(0 if paths else 2)
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"error: no such results file: {', '.join(missing)}")

    rows = load(paths)
    methods = [m for m in ORDER if any(r["method"] == m for r in rows)]
    methods += sorted({r["method"] for r in rows} - set(methods))
    lines = []
    order = task_names()
    rows = sorted(rows, key=lambda r: (order.index(r["env"]) if r["env"] in order else len(order), r["env"], r["goal"]))
    for (env, goal), group in common.group_rows(rows, ["env", "goal"]):
        lines.append([env, goal] + [cell([r for r in group if r["method"] == m]) for m in methods])
    print(common.markdown_table(["env", "goal"] + methods, lines))
    print()
    for (command, device), group in common.group_rows(rows, ["command", "device"]):
        seeds = {r["seed"] for r in group}
        print(f"- `{command}` ({device}, {len(group)} rows, seeds {sorted(seeds)})")


if __name__ == "__main__":
    main(sys.argv[1:])
