"""Export a trained run into the small checkpoint shipped in the package, with its tuned planner settings.

    python benchmarks/ship_checkpoint.py SRC NAME [key=value ...]
    python benchmarks/ship_checkpoint.py runs/umaze/final.pt pointmaze-umaze-d4rl guidance_scale=1.5 ddim_steps=3
    python benchmarks/ship_checkpoint.py runs/umaze-dwell/final.pt pointmaze-umaze-dwell objective=geodesic

SRC: a training checkpoint; NAME names the file, dfplan/checkpoints/<NAME>.pt (a task's shipped ones are
<env>-<variant>.pt, e.g. pointmaze-umaze-dwell, and <env>-diffuser.pt). The `key=value` pairs are the DF planner
settings (`dfplan.settings`: SamplerSettings and ControllerSettings fields, e.g. ddim_steps, schedule,
guidance_scale, mc_samples, horizon, replan_every, memory, objective); values are read as true/false, none,
int, float, else text. They are validated and completed by `dfplan.settings.resolve_settings(stored, **pairs)`,
where `stored` is what SRC's training preset stored (`planner:` in the training config, e.g. `+experiment=df_paper`),
and saved as `DFSettings.as_dict()`: settings given neither way get the defaults of `dfplan.settings`, not those of
an earlier export.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dfplan.checkpoint import export_for_inference, load_checkpoint
from dfplan.df.model import MODEL_TYPE
from dfplan.errors import UserError
from dfplan.settings import resolve_settings


def parse_value(raw: str):
    """'true'/'false' -> bool, 'none'/'null' -> None, then int, float, else the text itself."""
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def main(argv: list[str]) -> None:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__.strip())
        return
    if len(argv) < 2 or "=" in argv[0] or "=" in argv[1]:
        raise SystemExit(f"error: usage: python benchmarks/ship_checkpoint.py SRC NAME [key=value ...]; got {argv}")
    src, name, *pairs = argv
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise SystemExit(f"error: settings are key=value, got {bad}")

    given = dict(pair.split("=", 1) for pair in pairs)
    try:
        ckpt = load_checkpoint(src)
        settings = None  # Diffuser, BC and low-level checkpoints take no planner settings
        if ckpt.get("model_type") == MODEL_TYPE.name:
            settings = resolve_settings(ckpt.get("planner"), **{k: parse_value(v) for k, v in given.items()}).as_dict()
        elif given:
            raise UserError(f"{src} holds a {ckpt.get('model_type')} model: planner settings {sorted(given)} apply "
                            f"to DF checkpoints only")
        dst = Path(__file__).resolve().parents[1] / "dfplan" / "checkpoints" / f"{name}.pt"
        export_for_inference(src, dst, settings)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB) with {settings}; command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main(sys.argv[1:])
