#!/usr/bin/env bash
# What we run on a lent GPU machine (an image with CUDA PyTorch, no package index): install the wheels carried
# in .whl/ (gymnasium, gymnasium-robotics, mujoco, minari, hydra and their pure-Python needs) and dfplan into
# /tmp/site, then one stage. Logs, results and exported checkpoints go to $OUT.
#   bash benchmarks/gpu_session.sh check           # nvidia-smi, the test suite (gpu tests included), CUDA timings
#   bash benchmarks/gpu_session.sh train STEPS     # GPU tests and timings, then the Diffuser GPU preset on the three
#                                                  # mazes in parallel on the one GPU (exported half-size to $OUT)
#   bash benchmarks/gpu_session.sh eval            # GPU tests, DF vs Diffuser speed, Diffuser rows of the maze table
#   bash benchmarks/gpu_session.sh paper STEPS     # DF's paper configuration (+experiment=df_paper) at the paper's
#                                                  # scale (batch 4,096, whole-episode windows) on the three mazes at
#                                                  # once; resumes from benchmarks/resume/paper-<maze>-last.pt where
#                                                  # one is committed, and returns last.pt (2 MB) to commit there
#                                                  # and the EMA snapshots (paper-snapshots.tgz) for a score curve
#   bash benchmarks/gpu_session.sh scale [SECONDS] # Diffuser Medium/Large trained on, DF paper U-Maze and DF dwell
#                                                  # Large at GPU scale, side by side until SECONDS (default 540)
# .whl/ (git-ignored; carried to the machine) was filled here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl mujoco==3.11.0 gymnasium==1.4.0 \
#     gymnasium-robotics==1.4.2 Farama-Notifications==0.0.6 pettingzoo==1.27.0 glfw==2.11.0 PyOpenGL==3.1.10 \
#     minari==0.5.4 hydra-core==1.3.8 omegaconf==2.3.1 && pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
# and the gymnasium-robotics wheel repacked without its kitchen_franka and adroit_hand assets (to fit the 64 MiB
# the device tool carries; PointMaze does not use them).
set -uo pipefail
stage=$1
OUT=${OUT:-/tmp/gpu-out}  # exported checkpoints and logs.tgz (the device tool brings back at most 8 files)
LOG=/tmp/gpu-logs
REPO=$PWD
mkdir -p "$OUT" "$LOG"
export PYTHONUNBUFFERED=1 MINARI_DATASETS_PATH=/tmp/datasets PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  2>&1 | grep -v WARNING
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target /tmp/site . \
  2>&1 | grep -v WARNING
(cd /tmp && python3 -c "import dfplan.envs, torch; print('dfplan from', dfplan.envs.__file__, '| torch', torch.__version__)") || exit 1

datasets() {  # the 1M-step recipe datasets, generated in parallel on the CPU cores (~1 min)
  for m in umaze medium large; do
    [ -d "$MINARI_DATASETS_PATH/dfplan/pointmaze/$m-v0" ] || dfplan-data env=pointmaze-$m progress=false \
      > "$LOG/data-$m.log" 2>&1 &
  done
  wait
}

export_diffuser() {  # export_diffuser MAZE CHECKPOINT: the half-size inference export to $OUT, as shipped
  (cd /tmp && python3 -c "from dfplan.checkpoint import export_for_inference as e, load_checkpoint as l; \
print('$1', l('$2')['step'], 'steps ->', e('$2', '$OUT/pointmaze-$1-diffuser.pt', half=True))")
}

timings() {  # CUDA latency of DF plans, DF vs Diffuser speed (shipped checkpoints)
  python3 benchmarks/planning.py part=latency device=cuda variant=d4rl horizons=16,32,64 ddim_steps=3,10 mc=1,4 \
    batches=1,50 results="$LOG/planning.jsonl" 2>&1 | tail -16
  python3 benchmarks/speed.py env=pointmaze-umaze device=cuda episodes=50 results="$LOG/speed.jsonl" 2>&1 | tail -10
}

if [ "$stage" = check ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  datasets &
  (cd /tmp && python3 -m pytest -q -c "$REPO/pyproject.toml" -o pythonpath= -p no:cacheprovider -rs "$REPO/tests") \
    2>&1 | tee "$LOG/pytest.log" | tail -5
  timings
  wait
  python3 benchmarks/train_throughput.py device=cuda presets=df,df-gpu,diffuser-gpu results="$LOG/train.jsonl" \
    2>&1 | tail -12
  python3 benchmarks/train_throughput.py device=cuda presets=diffuser-gpu env=pointmaze-large \
    "overrides=model.horizon=384;model.n_diffusion_steps=256" results="$LOG/train.jsonl" 2>&1 | tail -8
elif [ "$stage" = train ]; then
  steps=$2
  datasets &
  (cd /tmp && python3 -m pytest -q -c "$REPO/pyproject.toml" -o pythonpath= -p no:cacheprovider "$REPO/tests/test_gpu.py" \
    "$REPO/tests/test_cli.py" "$REPO/tests/test_model.py") 2>&1 | tee "$LOG/pytest-gpu.log" | tail -2
  timings
  wait
  deadline=$((560 - SECONDS))  # this call has 600 s; a run stopped by it is exported from its last.pt and says so
  echo "training $steps steps, at most ${deadline} s"
  for m in umaze medium large; do
    extra=""; [ $m != umaze ] && extra="+experiment=diffuser_$m"
    (set -x; timeout $deadline dfplan-train env=pointmaze-$m model=diffuser train=diffuser_gpu $extra train.steps=$steps \
      train.checkpoint_every=500 device=cuda out=/tmp/runs/$m-diffuser) > "$LOG/train-$m.log" 2>&1 &
  done
  wait
  for m in umaze medium large; do
    src=/tmp/runs/$m-diffuser/final.pt; [ -f $src ] || src=/tmp/runs/$m-diffuser/last.pt
    cp /tmp/runs/$m-diffuser/log.csv "$LOG/train-$m.csv"
    export_diffuser $m $src
  done
elif [ "$stage" = paper ]; then
  steps=$2
  datasets
  deadline=$((560 - SECONDS))
  for m in umaze medium large; do
    window=300; width=16
    [ $m = medium ] && window=600
    [ $m = large ] && { window=800; width=32; }  # the paper code's episode_len and network_size per maze
    resume=false
    saved=benchmarks/resume/paper-$m-last.pt  # committed after each lease (U-Maze: step 2,250 of session 8)
    if [ -f $saved ]; then mkdir -p /tmp/runs/paper-$m && cp $saved /tmp/runs/paper-$m/last.pt && resume=true; fi
    (set -x; timeout $deadline dfplan-train env=pointmaze-$m dataset=dfplan/pointmaze/$m-v0 +experiment=df_paper train=gpu \
      train.batch_size=4096 train.steps=$steps train.window_steps=$window model.mlp_hidden=$width model.emb_dim=$width \
      train.checkpoint_every=500 train.val_every=1000 train.snapshot_every=5000 device=cuda resume=$resume \
      out=/tmp/runs/paper-$m) \
      > "$LOG/paper-$m.log" 2>&1 &
  done
  wait
  for m in umaze medium large; do
    cp /tmp/runs/paper-$m/last.pt "$OUT/paper-$m-last.pt"; cp /tmp/runs/paper-$m/log.csv "$LOG/paper-$m.csv"
  done
  # EMA snapshots every 5,000 steps (0.4 MB each) for benchmarks/training_curve.py here
  tar czf "$OUT/paper-snapshots.tgz" -C /tmp/runs $(cd /tmp/runs && ls -d paper-*/snapshots 2>/dev/null)
elif [ "$stage" = scale ]; then
  # One lease, four runs sharing the GPU, each started as soon as its dataset is written, all stopped by the clock
  # (last.pt every 250 steps): Diffuser Medium / Large trained on from the shipped models (batch 512, the paper's
  # rate, constant), DF's paper configuration on U-Maze at the paper's batch, and the DF dwell model on Large at the
  # GPU preset (constant rate, so a later lease resumes it). Returns the Diffuser exports, the DF runs' last.pt and
  # snapshots, and the logs.
  end=$((${2:-540} - 40))  # seconds into this script when training stops (exports and the tarball need ~40 s)
  run() {  # run NAME DATASET_ARGS... -- TRAIN_ARGS...: generate the dataset if missing, then train until $end
    local name=$1; shift; local data=(); while [ "$1" != -- ]; do data+=("$1"); shift; done; shift
    dfplan-data "${data[@]}" progress=false > "$LOG/data-$name.log" 2>&1
    (set -x; OMP_NUM_THREADS=3 timeout $((end - SECONDS)) dfplan-train "$@" device=cuda train.checkpoint_every=250 \
      train.progress=false out=/tmp/runs/$name) > "$LOG/train-$name.log" 2>&1
    cp /tmp/runs/$name/log.csv "$LOG/$name.csv"
  }
  for m in medium large; do
    run $m-diffuser env=pointmaze-$m -- env=pointmaze-$m model=diffuser train=diffuser_gpu +experiment=diffuser_$m \
      init=pointmaze-$m-diffuser train.steps=100000 train.batch_size=512 train.lr=2e-4 train.lr_schedule=constant \
      train.warmup_steps=100 train.val_every=500 &
  done
  run paper-umaze env=pointmaze-umaze -- env=pointmaze-umaze dataset=dfplan/pointmaze/umaze-v0 +experiment=df_paper \
    train=gpu train.batch_size=4096 train.steps=120000 train.window_steps=300 model.mlp_hidden=16 model.emb_dim=16 \
    train.val_every=500 train.snapshot_every=500 &
  run large-dwell env=pointmaze-large dwell=100 -- env=pointmaze-large dataset=dfplan/pointmaze/large-dwell100-v0 \
    train=gpu train.steps=100000 train.lr_schedule=constant train.val_every=500 train.snapshot_every=1000 &
  wait
  for m in medium large; do
    export_diffuser $m /tmp/runs/$m-diffuser/last.pt
  done
  cp /tmp/runs/large-dwell/last.pt "$OUT/large-dwell-last.pt"
  # the last four EMA snapshots (3.4 MB each; a file that comes back holds at most 16 MiB)
  tar czf "$OUT/large-dwell-snapshots.tgz" -C /tmp/runs $(cd /tmp/runs && ls large-dwell/snapshots/*.pt | tail -4)
  tar czf "$OUT/paper-umaze.tgz" -C /tmp/runs paper-umaze/last.pt paper-umaze/snapshots
  tail -n 3 "$LOG"/*.csv
elif [ "$stage" = eval ]; then  # shipped checkpoints only: no datasets needed
  (cd /tmp && python3 -m pytest -q -c "$REPO/pyproject.toml" -o pythonpath= -p no:cacheprovider "$REPO/tests/test_gpu.py" \
    "$REPO/tests/test_model.py" -k "gpu or cuda or ddp") 2>&1 | tee "$LOG/pytest-gpu.log" | tail -2
  python3 benchmarks/speed.py env=pointmaze-umaze device=cuda episodes=50 diffuser_modes=diffuser,diffuser-replan,diffuser-actions \
    results="$LOG/speed.jsonl" 2>&1 | tail -12
  for m in umaze medium large; do  # Diffuser rows of the maze table; results are appended row by row
    timeout $((570 - SECONDS)) python3 benchmarks/maze.py envs=pointmaze-$m goals=fixed,random device=cuda threads=4 \
      methods=diffuser,diffuser-actions,diffuser-replan seeds=3 episodes=50 results="$LOG/maze-$m.jsonl" \
      > "$LOG/maze-$m.log" 2>&1 &
  done
  wait
  tail -n 12 "$LOG"/maze-*.log
fi
tar czf "$OUT/logs.tgz" -C /tmp gpu-logs
ls -la "$OUT"
