"""rl-workbench: a task YAML becomes a trained, evaluated policy with a full record of the run."""

import os as _os

# Headless MuJoCo rendering (videos, camera rewards) works with EGL on these machines; a user's
# own MUJOCO_GL (osmesa, glfw) wins.
_os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
