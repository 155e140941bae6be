#!/usr/bin/env bash
# What we run on a lent GPU machine (an image with CUDA PyTorch, no package index): install the wheels carried
# in .whl/ (gymnasium, gymnasium-robotics, mujoco, minari, hydra and their pure-Python needs) and dfplan into
# /tmp/site, then one stage. Logs, results and exported checkpoints go to $OUT.
#   bash benchmarks/gpu_session.sh check           # nvidia-smi, the test suite (gpu tests included), CUDA timings
#   bash benchmarks/gpu_session.sh train STEPS     # Diffuser GPU preset on the three mazes, one GPU, in parallel
set -uo pipefail
stage=$1
OUT=${OUT:-/tmp/gpu-out}
REPO=$PWD
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MINARI_DATASETS_PATH=/tmp/datasets PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  2>&1 | grep -v WARNING
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target /tmp/site . \
  2>&1 | grep -v WARNING
(cd /tmp && python3 -c "import dfplan.envs, torch; print('dfplan from', dfplan.envs.__file__, '| torch', torch.__version__)") || exit 1

datasets() {  # the 1M-step recipe datasets, generated in parallel on the CPU cores (~1 min)
  for m in umaze medium large; do
    [ -d "$MINARI_DATASETS_PATH/dfplan/pointmaze/$m-v0" ] || dfplan-data env=pointmaze-$m progress=false \
      > "$OUT/data-$m.log" 2>&1 &
  done
  wait
}

if [ "$stage" = check ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  datasets &
  (cd /tmp && python3 -m pytest -q -c "$REPO/pyproject.toml" -o pythonpath= -p no:cacheprovider -rs "$REPO/tests") \
    2>&1 | tee "$OUT/pytest.log" | tail -5
  python3 benchmarks/planning.py part=latency device=cuda horizons=8,16,32,64 steps=3,10,20 mc=1,4 batches=1,50 \
    results="$OUT/planning.jsonl" 2>&1 | tail -30
  python3 benchmarks/speed.py env=pointmaze-umaze device=cuda episodes=50 results="$OUT/speed.jsonl" 2>&1 | tail -14
  wait
  python3 benchmarks/train_throughput.py device=cuda presets=df,df-gpu,diffuser-gpu results="$OUT/train.jsonl" \
    2>&1 | tail -12
  python3 benchmarks/train_throughput.py device=cuda presets=diffuser-gpu dataset=dfplan/pointmaze/large-v0 \
    "overrides=model.horizon=384;model.n_diffusion_steps=256" results="$OUT/train.jsonl" 2>&1 | tail -8
elif [ "$stage" = train ]; then
  steps=$2
  datasets
  for m in umaze medium large; do
    extra=""; [ $m != umaze ] && extra="+experiment=diffuser_$m"
    (set -x; dfplan-train env=pointmaze-$m model=diffuser train=diffuser_gpu $extra train.steps=$steps device=cuda \
      out=/tmp/runs/$m-diffuser) > "$OUT/train-$m.log" 2>&1 &
  done
  wait
  for m in umaze medium large; do
    tail -3 "$OUT/train-$m.log"
    cp /tmp/runs/$m-diffuser/log.csv "$OUT/train-$m.csv" 2>/dev/null
    (cd /tmp && python3 -c "from dfplan.checkpoint import export_for_inference as e; print(e('/tmp/runs/$m-diffuser/final.pt', \
'$OUT/pointmaze-$m-diffuser.pt', half=True))")
  done
fi
ls -la "$OUT"
