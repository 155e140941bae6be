"""Side-by-side table of maze results from `benchmarks/maze.py` JSON lines (any number of files, any machines).

    python benchmarks/summary.py benchmarks/results/maze-final.jsonl benchmarks/results/gpu/maze-*.jsonl

One line per maze x goal protocol, one column per method: normalized score mean ± s.e. over seeds, and the success
rate. When a (env, goal, method, seed) appears more than once, the latest row wins. Prints the commands and
machines the rows came from, so every number traces back to a run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import common

ORDER = ["df-dwell", "df-dwell-memory", "df-dwell-no-memory", "df-dwell-goal-distance", "df-geodesic", "df", "diffuser", "diffuser-actions", "diffuser-replan",
         "expert", "oracle"]


def load(paths: list[str]) -> list[dict]:
    latest: dict[tuple, dict] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                latest[(row["env"], row["goal"], row["method"], row["seed"])] = row
    return list(latest.values())


def cell(group: list[dict]) -> str:
    if not group:
        return "–"
    score = common.fmt_mean_se((r.get("normalized_score_mean") for r in group), 1)
    success, _, _ = common.mean_se(r.get("success_rate") for r in group)
    return f"{score} ({success:.0%})"


def main(paths: list[str]) -> None:
    if not paths:
        raise SystemExit(__doc__)
    rows = load(paths)
    methods = [m for m in ORDER if any(r["method"] == m for r in rows)]
    methods += sorted({r["method"] for r in rows} - set(methods))
    lines = []
    maze_order = ["pointmaze-umaze", "pointmaze-medium", "pointmaze-large"]
    rows = sorted(rows, key=lambda r: (maze_order.index(r["env"]) if r["env"] in maze_order else 9, r["goal"]))
    for (env, goal), group in common.group_rows(rows, ["env", "goal"]):
        lines.append([env.removeprefix("pointmaze-"), goal] +
                     [cell([r for r in group if r["method"] == m]) for m in methods])
    print(common.markdown_table(["maze", "goal"] + methods, lines))
    print()
    for (command, device), group in common.group_rows(rows, ["command", "device"]):
        seeds = {r["seed"] for r in group}
        print(f"- `{command}` ({device}, {len(group)} rows, seeds {sorted(seeds)})")


if __name__ == "__main__":
    main(sys.argv[1:])
