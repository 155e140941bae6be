"""Regenerate the generated parts of README.md and docs/ from the code, the shipped checkpoints and the results.

    python benchmarks/docs.py           # rewrite every generated region
    python benchmarks/docs.py check     # list the stale ones and exit 1 (what tests/test_docs.py runs)

A generated region sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->` in a Markdown file;
everything outside the markers is hand-written and kept as it is. The regions:
  checkpoints   README: every checkpoint in dfplan/checkpoints/ by task (`dfplan.tasks.task_names()`) and variant,
                with its held-out score from benchmarks/results (rows that ran it with its stored settings)
  results       README: one table per task family, the shipped models' rows of every results file
  results-files docs/results.md: one table per results file, every method (the row made last wins per cell)
  settings      docs/settings.md: every field of the settings dataclasses in dfplan/settings.py with its default,
                its comment, and each shipped checkpoint's stored value
  cli           docs/cli.md: each console command's `--help` and each benchmark script's docstring
Nothing is hard-coded per task, method or results file: a new results file, method, task or checkpoint shows up
when this runs again. Tables reuse `summary.py` (which row wins, the score, the cells) and `common.py` (Markdown).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import io
import json
import re
import sys
from pathlib import Path

import summary

import common

ROOT = common.REPO_ROOT
RESULTS = common.BENCH_DIR / "results"
COMMAND = "python benchmarks/docs.py"
REFERENCES = ("expert", "oracle", "random")  # the ceilings and the floor: listed last in every table
COMMANDS = ("dfplan-data", "dfplan-train", "dfplan-eval", "dfplan-plan", "dfplan-demo")


# --- results rows ------------------------------------------------------------------------------------
def results_files() -> list[Path]:
    return sorted(RESULTS.rglob("*.jsonl"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def is_eval_row(row: dict) -> bool:
    """A closed-loop evaluation row of a benchmark script: it has a method, an env and a score."""
    return bool(row.get("script") and row.get("env") and row.get("method")) and summary.score(row) is not None


def eval_rows(path: Path, keep=is_eval_row) -> list[dict]:
    """The rows of one file that `keep` accepts; the row made last wins per cell."""
    return summary.load([str(path)], keep=keep)


def checkpoint_file(row: dict) -> str | None:
    return Path(row["checkpoint"]).name if row.get("checkpoint") else None


def family_of(env: str) -> str:
    from dfplan.errors import UserError
    from dfplan.tasks import get_task

    try:
        return get_task(env).family
    except UserError:
        return "other"


def method_order(methods) -> list[str]:
    known = [m for m in summary.ORDER if m in methods and m not in REFERENCES]
    rest = sorted(set(methods) - set(known) - set(REFERENCES))
    return known + rest + [m for m in REFERENCES if m in methods]


def goal_columns(rows: list[dict]) -> list[tuple[str, str | None]]:
    """(env, goal) columns in the order of the task registry; the goal only where an env has more than one."""
    from dfplan.tasks import task_names

    order = task_names()
    envs = sorted({r["env"] for r in rows}, key=lambda e: (order.index(e) if e in order else len(order), e))
    cols = []
    for env in envs:
        goals = sorted({r.get("goal") for r in rows if r["env"] == env}, key=lambda g: (g != "fixed", str(g)))
        cols += [(env, g) for g in goals] if len(goals) > 1 else [(env, None)]
    return cols


def method_table(rows: list[dict]) -> str:
    """One line per method, one column per env (and goal protocol): `summary.cell` of its seeds."""
    cols = goal_columns(rows)
    lines = []
    for method in method_order({r["method"] for r in rows}):
        cells = [summary.cell([r for r in rows if r["method"] == method and r["env"] == env
                               and (goal is None or r.get("goal") == goal)]) for env, goal in cols]
        lines.append([f"`{method}`", *cells])
    return common.markdown_table(["method", *[f"{env}{f' ({goal})' if goal else ''}" for env, goal in cols]], lines)


def shipped_files() -> set[str]:
    from dfplan.checkpoint import shipped_dir

    return {p.name for p in shipped_dir().glob("*.pt")}


README_METHODS = ("df", "df-dwell", "df-actions", "df-subgoal-layer", "diffuser", "diffuser-tuned", "bc", "expert",
                  "random")  # the rest:
#   docs/results.md


def render_results() -> str:
    """README: per task family, the rows of the shipped models' headline methods (`README_METHODS`; experts and
    random need no checkpoint) in any results file."""
    shipped = shipped_files()

    def of_shipped(row):
        return (is_eval_row(row) and row["method"] in README_METHODS
                and (checkpoint_file(row) is None or checkpoint_file(row) in shipped))

    rows = summary.load([str(p) for p in results_files()], keep=of_shipped)
    from dfplan.tasks import task_names

    order = list(dict.fromkeys(family_of(t) for t in task_names()))
    out = []
    for family in sorted({family_of(r["env"]) for r in rows}, key=lambda f: (order + [f]).index(f)):
        group = [r for r in rows if family_of(r["env"]) == family]
        score = " / ".join(sorted({r.get("score_name") or "normalized score" for r in group}))
        success = "" if score.startswith("success") else " (success rate)"
        out += [f"**{family}**: {score}{success}, mean ± s.e. over seeds", "", method_table(group), ""]
    return "\n".join(out).rstrip()


def render_results_files() -> str:
    """docs/results.md: every results file's evaluation rows as one table, with the commands that made them."""
    out = []
    for path in results_files():
        rows = eval_rows(path)
        if not rows:
            continue
        out += [f"### `{rel(path)}`", "", method_table(rows), "", "Made by:", ""]
        for (command, device), group in common.group_rows(rows, ["command", "device"]):
            out.append(f"- `{command}` ({device}, {len(group)} rows)")
        out.append("")
    return "\n".join(out).rstrip()


# --- shipped checkpoints -----------------------------------------------------------------------------
def flat(settings: dict | None) -> dict:
    out = {}
    for k, v in (settings or {}).items():
        out.update(v) if isinstance(v, dict) else out.__setitem__(k, v)
    return out


def stored_settings(ckpt: dict) -> dict | None:
    """A DF checkpoint's settings as the planner resolves them (defaults filled in); None for other models."""
    from dfplan.settings import resolve_settings

    return resolve_settings(ckpt["planner"]).flat() if ckpt.get("planner") is not None else None


def shipped() -> list[dict]:
    """Every shipped checkpoint: file, task, variant, model type, stored settings; in the task registry's order."""
    from dfplan.checkpoint import load_checkpoint, shipped_dir
    from dfplan.tasks import task_names

    order = task_names()
    out = []
    for path in sorted(shipped_dir().glob("*.pt")):
        task = max((t for t in order if path.stem.startswith(t + "-")), key=len, default=None)
        ckpt = load_checkpoint(path)
        out.append({"file": path.name, "task": task or path.stem, "variant": path.stem[len(task) + 1:] if task else "",
                    "model_type": ckpt.get("model_type"), "settings": stored_settings(ckpt),
                    "dataset": ckpt.get("dataset_id"), "step": ckpt.get("step"),
                    "exported_from": ckpt.get("exported_from"), "execution": ckpt.get("execution")})
    return sorted(out, key=lambda c: (order.index(c["task"]) if c["task"] in order else len(order), c["file"]))


def held_out(ck: dict, rows: list[dict]) -> str:
    """The checkpoint's held-out score: rows that ran it as shipped (a DF checkpoint: every setting the row records
    equals the stored one, the plainest method name; another model: the method named for its type, e.g.
    `diffuser`, or `diffuser-tuned` for one that stores its tuned execution; rows of the training run it was exported
    from count as its own), from the script with
    the most recent such rows; one figure per goal protocol (`fixed / random`)."""
    mine = [r for r in rows if checkpoint_file(r) == ck["file"] or r["checkpoint"] == ck["exported_from"]]
    if ck["settings"] is not None:
        mine = [r for r in mine if all(ck["settings"].get(k, v) == v for k, v in flat(r.get("settings")).items())]
    else:
        method = f"{ck['model_type']}-tuned" if ck.get("execution") else ck["model_type"]
        mine = [r for r in mine if r.get("method") == method]
    latest: dict[tuple, dict] = {}
    for r in mine:  # the row made last per cell, whichever file holds it
        key = (r["script"], r.get("goal"), r.get("method"), r.get("row"), r.get("seed"))
        if key not in latest or r.get("time", "") >= latest[key].get("time", ""):
            latest[key] = r
    mine = list(latest.values())
    if not mine:
        return "–"
    script = max(mine, key=lambda r: (bool(r.get("method")), r.get("time", "")))["script"]
    mine = [r for r in mine if r["script"] == script]
    plain = min(len(r.get("method") or "") for r in mine)  # a suffix (df-whole-goal) changes more than settings
    mine = [r for r in mine if len(r.get("method") or "") == plain]
    goals = sorted({r.get("goal") for r in mine}, key=lambda g: (g != "fixed", str(g)))
    figures = [common.mean_se(summary.score(r) for r in mine if r.get("goal") == g)[0] for g in goals]
    return " / ".join(f"{f:.1f}" for f in figures)


def render_checkpoints() -> str:
    """One line per task: its DF variants (the default first, bold) and each other model type that ships, with the
    held-out score (`held_out`; `ships` where no results row ran it on its own, e.g. a low-level policy)."""
    from dfplan.tasks import get_task

    rows = [json.loads(line) for p in results_files() for line in p.read_text().splitlines() if line.strip()]
    rows = [r for r in rows
            if r.get("script") and r.get("env") and r.get("checkpoint") and summary.score(r) is not None]
    cks = shipped()
    df_type = "df_rnn"
    others = list(dict.fromkeys(c["model_type"] for c in cks if c["model_type"] != df_type))
    lines = []
    for task in dict.fromkeys(c["task"] for c in cks):
        mine = [c for c in cks if c["task"] == task]
        try:
            default = get_task(task).variants[0]
        except Exception:  # a file named after no task: no default
            default = None
        dfs = sorted((c for c in mine if c["model_type"] == df_type), key=lambda c: c["variant"] != default)
        score = lambda c: held_out(c, rows).replace("–", "ships")  # noqa: E731
        df_cell = " · ".join((f"**{c['variant']}** {score(c)}" if c["variant"] == default else
                              f"{c['variant']} {score(c)}") for c in dfs)
        cells = [" · ".join(score(c) for c in mine if c["model_type"] == t) or "–" for t in others]
        lines.append([task, df_cell or "–", *cells])
    return common.markdown_table(["task", "DF: variant score (**default**)", *others], lines)


# --- settings ----------------------------------------------------------------------------------------
def field_comments(cls) -> dict[str, str]:
    """The comment after each field of a dataclass, with its `#   ` continuation lines."""
    lines = inspect.getsource(cls).splitlines()
    out, current = {}, None
    for ln in lines:
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s?(.*)$", ln)
        if m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current and re.match(r"\s+#\s{3}", ln):
            out[current] += " " + ln.strip().lstrip("#").strip()
        else:
            current = None
    return out


def render_settings() -> str:
    import dfplan.settings as settings

    classes = [c for _, c in inspect.getmembers(settings, inspect.isclass)
               if dataclasses.is_dataclass(c) and c.__module__ == settings.__name__]
    classes.sort(key=lambda c: inspect.getsourcelines(c)[1])
    out = []
    for cls in classes:
        comments = field_comments(cls)
        fields = [f for f in dataclasses.fields(cls) if f.name in comments]
        if not fields:
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        out += [f"### `{cls.__name__}`", "", doc, "",
                common.markdown_table(["key", "default", "meaning"],
                                      [[f"`{f.name}`", f"`{f.default!r}`", comments[f.name].replace("|", "\\|")]
                                       for f in fields]), ""]
    df = [c for c in shipped() if c["settings"] is not None]
    keys = [k for k in df[0]["settings"]] if df else []
    out += ["### Each shipped checkpoint's stored value", "",
            "What `dfplan.settings.resolve_settings` gives for each shipped DF checkpoint before any override "
            "(its stored settings, the defaults above where it stores none).", ""]
    lines = [[f"`{k}`", *[f"`{c['settings'].get(k)!r}`" for c in df]] for k in keys]
    out.append(common.markdown_table(["key", *[c["file"][:-3] for c in df]], lines))
    return "\n".join(out).rstrip()


# --- commands ----------------------------------------------------------------------------------------
def help_of(command: str) -> str:
    import dfplan.cli as cli

    main = getattr(cli, command.split("-", 1)[1] + "_main")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["--help"])
    return buf.getvalue().rstrip()


def render_cli() -> str:
    out = []
    for command in COMMANDS:
        out += [f"### `{command}`", "", "```text", f"$ {command} --help", help_of(command), "```", ""]
    out += ["## Benchmark scripts", "", "Each is `python benchmarks/<script>.py key=value ...`; `--help` prints what "
            "follows (the script's docstring).", ""]
    for path in sorted(common.BENCH_DIR.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if doc and path.stem != "common":
            out += [f"### `benchmarks/{path.name}`", "", "```text", doc.strip(), "```", ""]
    return "\n".join(out).rstrip()


# --- regions -----------------------------------------------------------------------------------------
REGIONS = {"checkpoints": render_checkpoints, "results": render_results, "results-files": render_results_files,
           "settings": render_settings, "cli": render_cli}
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated: \2 -->)", re.S)


def regenerate(text: str, cache: dict) -> str:
    def fill(m):
        name = m.group(2)
        if name not in REGIONS:
            raise SystemExit(f"error: unknown generated region {name!r}; known: {sorted(REGIONS)}")
        if name not in cache:
            cache[name] = REGIONS[name]()
        return f"{m.group(1)}{cache[name]}\n{m.group(4)}"

    return MARK.sub(fill, text)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__.strip())
        return 0
    check = "check" in argv
    cache: dict = {}
    stale = []
    for page in PAGES:
        path = ROOT / page
        old = path.read_text()
        new = regenerate(old, cache)
        if new != old:
            stale.append(page)
            if not check:
                path.write_text(new)
    if check and stale:
        print(f"stale generated docs: {', '.join(stale)}; regenerate them with: {COMMAND}", file=sys.stderr)
        return 1
    print(("up to date: " if check or not stale else "rewrote: ") + ", ".join(stale or PAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
