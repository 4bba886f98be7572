#!/usr/bin/env bash
# Record the D4RL-style offline datasets of the workbench (README "Offline RL"): for each env, an
# online SAC run of MEDIUM_STEPS (the medium policy; its replay buffer is medium-replay) and one of
# EXPERT_STEPS (the expert, also every dataset's expert reference score), then the random, medium,
# medium-replay and expert datasets as Minari datasets (MINARI_DATASETS_PATH or ~/.minari/datasets).
# planar_push (the workbench's own PlanarPush) needs no training: its scripted pusher is the expert,
# the same with action noise the medium policy.
#   usage: scripts/offline_datasets.sh [hopper halfcheetah walker2d planar_push]
# On the 2-core CPU machines: about 20 min per MuJoCo env at the defaults, 2 min for planar_push.
set -euo pipefail
cd "$(dirname "$0")/.."
WB=${WB:-.venv/bin/workbench}
RUNS=${RUNS:-runs/offline-data}
MEDIUM_STEPS=${MEDIUM_STEPS:-30000}
EXPERT_STEPS=${EXPERT_STEPS:-100000}
EPISODES=${EPISODES:-100}
VERSION=${VERSION:-v0}
ENVS=("$@")
[ ${#ENVS[@]} -eq 0 ] && ENVS=(hopper halfcheetah walker2d planar_push)

latest_run() { ls -dt "$RUNS/$1"__sac__s0__* 2>/dev/null | head -1; }

for env in "${ENVS[@]}"; do
  if [ "$env" = planar_push ]; then
    # the workbench's own task: its scripted pusher (98% success) is the expert; with Gaussian action
    # noise of 1.5 x the action half-range it is the medium policy (~40-50% success)
    task=tasks/mujoco/planar_push.yaml
    "$WB" data collect "$task" --policy random --episodes "$EPISODES" --expert reference --out "planar_push-random-${VERSION}" --force
    "$WB" data collect "$task" --policy reference --noise 1.5 --episodes "$EPISODES" --out "planar_push-medium-${VERSION}" --force
    "$WB" data collect "$task" --policy reference --episodes "$EPISODES" --out "planar_push-expert-${VERSION}" --force
    continue
  fi
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
