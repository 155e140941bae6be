"""Tasks as plug-ins: `get_task(name)` is the one place that turns an env name into a `Task`.

A task family is a module in this package with `FAMILY` (its name, stored in checkpoints' task specs),
`named_tasks()` ({name: factory}), `from_spec(spec)` (rebuild a task a checkpoint was trained for) and optionally
`from_dataset(name, dataset_id)` (a user's own env, recovered from its dataset), and optionally `ORDER` (where its
tasks stand in listings; families without one come last, by name). Adding an environment family means adding one
such module here: the package finds its families itself (`FAMILIES`). A family whose env needs an optional
dependency (OGBench) imports it only when an env is made.
"""

from __future__ import annotations

import importlib
import math
import pkgutil

from dfplan.errors import UserError, choices_hint
from dfplan.tasks.base import Task
from dfplan.types import EpisodeResult


def _find_families() -> dict:
    """{family name: module} for every module of this package that defines a task family."""
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)
               if info.name != "base"]
    families = [m for m in modules if hasattr(m, "named_tasks") and hasattr(m, "from_spec")]
    families.sort(key=lambda m: (getattr(m, "ORDER", math.inf), m.__name__))
    return {m.FAMILY: m for m in families}


FAMILIES = _find_families()


def task_names() -> list[str]:
    return [name for fam in FAMILIES.values() for name in fam.named_tasks()]


def get_task(name: str, spec: dict | None = None, dataset_id: str | None = None) -> Task:
    """The task `name`: a named one, else the one a checkpoint's `spec` describes, else a user's own env whose
    dataset (`dataset_id`, or the default id for `name`) holds it. Unknown names raise a one-line UserError."""
    if not isinstance(name, str) or not name:
        raise UserError(f"env={name!r} must be a task name; choose one of {task_names()}")
    for fam in FAMILIES.values():
        factory = fam.named_tasks().get(name)
        if factory is not None:
            return factory()
    if spec is not None and spec.get("name") == name:
        return task_from_spec(spec)
    for fam in FAMILIES.values():
        found = fam.from_dataset(name, dataset_id) if hasattr(fam, "from_dataset") else None
        if found is not None:
            return found
    names = task_names()
    raise UserError(f"unknown env {name!r}{choices_hint(name, names)}; choose one of {names} (or make your own maze "
                    f"with: dfplan-data env={name} maze_map=[[1,1,1,1],[1,0,0,1],[1,1,1,1]])")


def task_from_spec(spec: dict) -> Task:
    """Rebuild the task a checkpoint stores (`Task.spec()`)."""
    fam = FAMILIES.get(spec.get("family"))
    if fam is None:
        raise UserError(f"the checkpoint was made for an unknown task family {spec.get('family')!r}; upgrade dfplan")
    named = fam.named_tasks().get(spec.get("name"))
    return named() if named is not None else fam.from_spec(spec)


__all__ = ["EpisodeResult", "FAMILIES", "Task", "get_task", "task_from_spec", "task_names"]
