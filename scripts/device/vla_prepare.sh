#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what the VLA GPU check (scripts/device/vla_gpu.sh) carries to a GPU
# machine that has PyTorch but no registry access: into three git-ignored folders at the repo root
#   .whl/       the workbench's pure-Python and MuJoCo wheels for CPython 3.12 (~29 MB)
#   .gl/        the GL/EGL loader packages MuJoCo's EGL rendering needs (~0.4 MB)
#   .devcache/  the PlanarPush demonstrations (tar.xz, ~8 MB) and every instruction's MiniLM
#               embedding (workbench/text.py's cache: the 88 MB model wheel does not fit the carry)
# Record the demonstrations first (tasks/vla/planar_push_bc.yaml says how).
#   usage: scripts/device/vla_prepare.sh   then, on the device: bash scripts/device/vla_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATASET=${DATASET:-planar_push_instruct-demos-v0}
for d in .whl .gl .devcache; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done

platforms=()
for n in 2_17 2_24 2_27 2_28 2_31 2_34 2_35; do platforms+=(--platform "manylinux_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
wheels=()
for dist in mujoco mujoco-core mujoco-studio gymnasium farama-notifications glfw pyopengl minari pydantic \
            pydantic-core annotated-types typing-inspection typing-extensions stable-baselines3; do
  wheels+=("$dist==$(version "$dist")")
done
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${wheels[@]}"

mkdir -p .gl /tmp/amd64/partial
apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
apt-get "${apt_opts[@]}" update >/dev/null
(cd .gl && apt-get "${apt_opts[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)

mkdir -p .devcache
tar -C "${MINARI_DATASETS_PATH:-$HOME/.minari/datasets}" -cf - "$DATASET" | xz -6 -T2 > .devcache/demos.tar.xz
WORKBENCH_CACHE_DIR=$PWD/.devcache/cache "$PY" -c "
from workbench.sims.planar_push_instruct import instructions
from workbench.text import embed
embed([text for text, _ in instructions('all')])"
du -sh .whl .gl .devcache
