"""Tasks as plug-ins: `get_task(name)` is the one place that turns an env name into a `Task`.

A task family is a module with `named_tasks()` ({name: factory}), `from_spec(spec)` (rebuild a task a checkpoint
was trained for) and optionally `from_dataset(name, dataset_id)` (a user's own env, recovered from its dataset).
Adding an environment family means adding one module here and naming it in FAMILIES.
"""

from __future__ import annotations

import importlib

from dfplan.errors import UserError, choices_hint
from dfplan.tasks.base import EpisodeResult, Task

FAMILIES = ("dfplan.tasks.pointmaze", "dfplan.tasks.fetch", "dfplan.tasks.ogbench", "dfplan.tasks.ogbench_maze")


def _families():
    return [importlib.import_module(m) for m in FAMILIES]


def task_names() -> list[str]:
    return [name for fam in _families() for name in fam.named_tasks()]


def get_task(name: str, spec: dict | None = None, dataset_id: str | None = None) -> Task:
    """The task `name`: a named one, else the one a checkpoint's `spec` describes, else a user's own env whose
    dataset (`dataset_id`, or the default id for `name`) holds it. Unknown names raise a one-line UserError."""
    if not isinstance(name, str) or not name:
        raise UserError(f"env={name!r} must be a task name; choose one of {task_names()}")
    for fam in _families():
        factory = fam.named_tasks().get(name)
        if factory is not None:
            return factory()
    if spec is not None and spec.get("name") == name:
        return task_from_spec(spec)
    for fam in _families():
        found = getattr(fam, "from_dataset", lambda *_: None)(name, dataset_id)
        if found is not None:
            return found
    names = task_names()
    raise UserError(f"unknown env {name!r}{choices_hint(name, names)}; choose one of {names} (or make your own maze "
                    f"with: dfplan-data env={name} maze_map=[[1,1,1,1],[1,0,0,1],[1,1,1,1]])")


def task_from_spec(spec: dict) -> Task:
    """Rebuild the task a checkpoint stores (`Task.spec()`)."""
    for fam in _families():
        if fam.__name__.rsplit(".", 1)[-1] == spec.get("family"):
            named = fam.named_tasks().get(spec.get("name"))
            return named() if named is not None else fam.from_spec(spec)
    raise UserError(f"the checkpoint was made for an unknown task family {spec.get('family')!r}; upgrade dfplan")


__all__ = ["EpisodeResult", "Task", "get_task", "task_from_spec", "task_names"]
