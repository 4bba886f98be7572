#!/usr/bin/env bash
# Record the D4RL-style offline datasets of the workbench (README "Offline RL"): for each env, an
# online SAC run of MEDIUM_STEPS (the medium policy; its replay buffer is medium-replay) and one of
# EXPERT_STEPS (the expert, also every dataset's expert reference score), then the random, medium,
# medium-replay and expert datasets as Minari datasets (MINARI_DATASETS_PATH or ~/.minari/datasets).
#   usage: scripts/offline_datasets.sh [hopper halfcheetah walker2d]
# On the 2-core CPU machines: about 20 min per env at the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
WB=${WB:-.venv/bin/workbench}
RUNS=${RUNS:-runs/offline-data}
MEDIUM_STEPS=${MEDIUM_STEPS:-30000}
EXPERT_STEPS=${EXPERT_STEPS:-100000}
EPISODES=${EPISODES:-100}
VERSION=${VERSION:-v0}
ENVS=("$@")
[ ${#ENVS[@]} -eq 0 ] && ENVS=(hopper halfcheetah walker2d)

latest_run() { ls -dt "$RUNS/$1"__sac__s0__* 2>/dev/null | head -1; }

for env in "${ENVS[@]}"; do
  task=tasks/offline/${env}_sac.yaml
  for budget in "$MEDIUM_STEPS" "$EXPERT_STEPS"; do
    "$WB" run "$task" --set training.total_steps="$budget" --set name="${env}_sac_${budget}" --runs-dir "$RUNS" -q
  done
  medium=$(latest_run "${env}_sac_${MEDIUM_STEPS}")
  expert=$(latest_run "${env}_sac_${EXPERT_STEPS}")
  "$WB" data collect "$task" --policy random --episodes "$EPISODES" --expert "$expert" --out "${env}-random-${VERSION}" --force
  "$WB" data collect "$task" --policy "$medium" --episodes "$EPISODES" --expert "$expert" --out "${env}-medium-${VERSION}" --force
  "$WB" data collect "$task" --policy "$medium" --replay-buffer --expert "$expert" --out "${env}-medium-replay-${VERSION}" --force
  "$WB" data collect "$task" --policy "$expert" --episodes "$EPISODES" --out "${env}-expert-${VERSION}" --force
done
"$WB" data list
