#!/usr/bin/env bash
# The VLA GPU check of issue 18, run on a lent GPU machine from the repo root after
# scripts/device/vla_prepare.sh (carry .whl .gl .devcache):
#   1. a render probe (MuJoCo through EGL) and the GPU's name;
#   2. BC throughput on the GPU at several batch sizes against the CPU: samples/s, peak GPU memory;
#   3. the held-out success table (benchmarks/vla.py) at a larger scale than the CPU one: 3 seeds,
#      BC_UPDATES updates at batch BATCH, then GRAPE and SRPO from each with ROLLOUT_STEPS env steps,
#      all nine runs side by side (one GPU; each rollout learner steps its envs on the CPU).
# Everything it prints also lands in $OUT/vla_gpu.log (the device tool brings $OUT back).
#   usage: bash scripts/device/vla_gpu.sh   (env: BC_UPDATES, BATCH, ROLLOUT_STEPS, EPISODES, LIMIT, THROUGHPUT)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/vla-gpu}
mkdir -p "$OUT"
exec > >(tee "$OUT/vla_gpu.log") 2>&1
BC_UPDATES=${BC_UPDATES:-20000} BATCH=${BATCH:-256} ROLLOUT_STEPS=${ROLLOUT_STEPS:-32000}
EPISODES=${EPISODES:-60} LIMIT=${LIMIT:-480} THROUGHPUT=${THROUGHPUT-64 256 1024 4096}
started=$(date +%s)

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 3
# the workbench itself, installed (its package map puts assets/ at workbench.assets, plus entry points)
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target /tmp/site . || exit 3
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 MUJOCO_GL=egl
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
export WORKBENCH_CACHE_DIR=$PWD/.devcache/cache MINARI_DATASETS_PATH=/tmp/minari WORKBENCH_RUNS_DIR=/tmp/vla-runs
mkdir -p "$MINARI_DATASETS_PATH"
tar -xJf .devcache/demos.tar.xz -C "$MINARI_DATASETS_PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc

echo "== 1. render probe"
python3 -P - <<'PY' || exit 4  # -P: the installed workbench, not the checkout
import gymnasium as gym, numpy as np, torch
from workbench.sims.planar_push_instruct import register_env
register_env()
env = gym.make("workbench/PlanarPushInstruct-v0", instructions="train")
obs, _ = env.reset(seed=0)
print("image", obs["image"].shape, "mean", float(obs["image"].mean()), "| torch", torch.__version__,
      "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

echo "== 2. BC throughput (s since start: $(( $(date +%s) - started )))"
# shellcheck disable=SC2086  # THROUGHPUT is a list of batch sizes; empty skips this part
[ -n "$THROUGHPUT" ] && timeout 120 python3 benchmarks/vla.py --seeds --throughput $THROUGHPUT --throughput-updates 300

echo "== 3. held-out success, 3 seeds (s since start: $(( $(date +%s) - started )))"
left=$(( LIMIT - ($(date +%s) - started) ))
timeout "$left" python3 benchmarks/vla.py --seeds 0 1 2 --jobs 9 --bc-updates "$BC_UPDATES" \
  --rollout-steps "$ROLLOUT_STEPS" --episodes "$EPISODES" --runs-dir /tmp/vla-runs \
  --set "learner.hyperparams.batch_size=$BATCH" --set evaluation.video_episodes=0
echo "exit $? after $(( $(date +%s) - started )) s"
for f in /tmp/vla-runs/*/vla/vla.json; do
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r.pop('bc', None); r.pop('rounds', None); print(sys.argv[1].split('/')[3], json.dumps(r)[:400])" "$f"
done
