"""Every workbench task as a Gymnasium env: the registered id ``rl_workbench/Task-v0``.

Importing this module registers the id (it imports gymnasium and nothing heavier)::

    import gymnasium as gym
    import workbench.gym_env  # registers rl_workbench/Task-v0

    env = gym.make("rl_workbench/Task-v0", task="tasks/mujoco/reacher.yaml",
                   overrides=["sim.max_episode_steps=50"])

``import workbench`` registers it too when gymnasium is already imported (``import gymnasium``
before ``import workbench``, the order isort gives), without importing gymnasium itself: it stays
light either way. ``gym.make("workbench.gym_env:rl_workbench/Task-v0", ...)`` imports this module
on the spot, and RL Zoo's ``--gym-packages workbench.gym_env`` does the same.

The keyword arguments (plain data: the env's ``spec`` records them, pickles, and rebuilds it):

* ``task``: a task file (path), or a task as data (the mapping a task file holds; relative paths in
  it resolve against its ``source_path`` key, else the working directory);
* ``run``: a run directory (``runs/<name>``) instead: its resolved task with the reward program it
  recorded, exactly what trained there (an LLM-synthesized reward is never synthesized again);
* ``overrides``: ``["key.path=value", ...]``, as ``workbench run --set``;
* ``program``: a reward program file (``compute_reward`` or ``compute_reward_batch``) that replaces
  the task's reward, sandbox-checked as a ``reward: {source: code}`` file; ``program_source``: the
  same as text (what an env made by ``Task.make_env()`` records when its reward is a program);
* ``render_mode``: as for any gymnasium env (a pixel-reward task always renders ``rgb_array``).

The env is ``Task.make_env()``'s: the simulator's env with the task's time limit inside, the reward
program's terms in ``info["reward/<name>"]``, the simulator's reward in ``info["reward/env"]`` and
``info["is_success"]`` (the task's own success metric) at episode end. A task whose reward would
call an LLM (``text2reward``, ``auto_mc``, ``lare`` without encoder files) is refused with the fix
(``run=`` or ``program=``), and so is a reward learned across a vector of training envs (LaRe's
decoder), which one env cannot carry. Recreating (``env.spec.make()``, ``gym.make(env.spec)``,
``gym.make_vec``) builds the task again from these arguments, so the program is checked again.

The entry point is :func:`workbench.task.make_task_env`; a task env's ``TaskWrapper`` reports the
spec (:meth:`workbench.task.Task.env_kwargs`).
"""

from __future__ import annotations

import gymnasium as gym

__all__ = ["ENV_ID", "ENTRY_POINT", "register"]

ENV_ID = "rl_workbench/Task-v0"
ENTRY_POINT = "workbench.task:make_task_env"


def register() -> None:
    """Register :data:`ENV_ID` (once; importing this module does it). The time limit, the order
    enforcing and the env checker of ``gym.make`` are left to their defaults: the task's own time
    limit sits inside the env (under the TaskWrapper, which must see the truncation to judge
    success), so the id declares none."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=ENTRY_POINT)


register()
