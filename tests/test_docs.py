"""The docs as a user and a contributor meet them: generated parts up to date, the README short and for users, every
command in it one the CLI accepts, every relative link pointing at a file, and one version everywhere. Fast: no
training, no episodes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import dfplan

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
REGENERATE = "python benchmarks/docs.py"
PAGES = [README, ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_generated_docs_are_up_to_date():
    """README regions and docs pages generated from the code, the shipped checkpoints and benchmarks/results."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "docs.py"), "check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stderr.strip()[-2000:]}\nregenerate with: {REGENERATE}"


def test_readme_is_short_and_keeps_the_ci_command():
    text = README.read_text()
    assert len(text) <= 12_000, f"README.md is {len(text)} characters; move detail to docs/"
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ".[test]" && '
                    'python -m pytest -q')
    assert test_command in text.splitlines()  # byte-identical: CI runs exactly this line
    assert 'pip install -q torch==2.13.0 -e ".[test]"' in ci and "python -m pytest -q" in ci
    assert "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 . && dfplan-demo" in text
    assert "tuning episodes" not in text  # lab material belongs in docs/lab-notes


def readme_commands() -> list[list[str]]:
    """Every `dfplan-<command> key=value ...` line of the README's bash blocks, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = [ln.split("#", 1)[0].strip() for block in blocks for ln in block.splitlines()]
    return [ln.split() for ln in lines if re.match(r"dfplan-\w+ ", ln)]


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a))
def test_readme_commands_compose(argv):
    """Each README command line is one the CLI accepts: its keys and values compose against the command's config."""
    from dfplan.cli import compose

    config = {"dfplan-data": "data", "dfplan-train": "train", "dfplan-eval": "eval", "dfplan-plan": "plan",
              "dfplan-demo": "demo"}[argv[0]]
    compose(config, argv[1:])


def test_readme_benchmark_commands_name_scripts_that_exist():
    scripts = re.findall(r"python (benchmarks/\w+\.py)", README.read_text())
    assert scripts and all((ROOT / s).is_file() for s in scripts), scripts


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    links = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)
             if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    missing = [t for t in links if t and not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_one_version_matches_the_changelog():
    pyproject = re.search(r'(?m)^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    latest = re.search(r"(?m)^## (\d+\.\d+(?:\.\d+)?)", (ROOT / "CHANGELOG.md").read_text()).group(1)
    assert dfplan.__version__ == pyproject == latest, (dfplan.__version__, pyproject, latest)


def test_config_comments_name_modules_that_exist():
    """Every `dfplan.<module>[.<name>]` a YAML config mentions resolves (headers name the classes they configure)."""
    import importlib

    missing = []
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        for name in set(re.findall(r"dfplan(?:\.\w+)+", path.read_text())):
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ImportError:
                    continue
                try:
                    for attr in parts[i:]:
                        obj = getattr(obj, attr)
                except AttributeError:
                    missing.append(f"{path.relative_to(ROOT)}: {name}")
                break
    assert not missing, missing
