"""Export a trained run into the small checkpoint shipped in the package, with its tuned planner settings.

    python benchmarks/ship_checkpoint.py runs/umaze/final.pt pointmaze-umaze guidance_scale=1.0 memory=true
    python benchmarks/ship_checkpoint.py runs/umaze-dwell/final.pt pointmaze-umaze-dwell objective=geodesic

The second argument names the file: dfplan/checkpoints/<name>.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dfplan.checkpoint import export_for_inference

DEFAULTS = {"horizon": 32, "steps": 10, "schedule": "pyramid", "guidance_scale": 1.0, "mc_samples": 1,
            "memory": True, "replan_every": 4, "objective": "goal_distance"}
CONTROLLER_KEYS = ("memory", "replan_every", "objective")


def main(argv: list[str]) -> None:
    src, env, *pairs = argv
    settings = dict(DEFAULTS)
    for pair in pairs:
        key, value = pair.split("=", 1)
        if key not in settings:
            raise SystemExit(f"unknown setting {key!r}; known: {sorted(settings)}")
        settings[key] = type(settings[key])(value) if not isinstance(settings[key], bool) else value == "true"
    planner = {"horizon": settings["horizon"],
               "sampler": {k: settings[k] for k in ("steps", "schedule", "guidance_scale", "mc_samples")},
               "controller": {k: settings[k] for k in CONTROLLER_KEYS}}
    dst = Path(__file__).resolve().parents[1] / "dfplan" / "checkpoints" / f"{env}.pt"
    export_for_inference(src, dst, planner)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB) with {planner}; command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main(sys.argv[1:])
