"""Reward-program sources shared by the sandbox and checks tests."""

GOOD = """\
import numpy as np

def compute_reward(state, action):
    dist = np.linalg.norm(state.fingertip_pos - state.target_pos)
    ctrl = 0.1 * float(np.sum(np.square(action)))
    return -dist - ctrl, {"distance": -dist, "control": -ctrl}
"""


def program(body: str, header: str = "import numpy as np\n") -> str:
    """A compute_reward whose body is ``body`` (indented for you)."""
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"{header}\ndef compute_reward(state, action):\n{lines}\n"
