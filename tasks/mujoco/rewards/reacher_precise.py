# Reacher reward with a precision term: the env's own reward (-distance - control) only cares
# about distance linearly, so policies hover near the target; the Gaussian bonus pays for
# actually arriving within about 2 cm.
import numpy as np


def compute_reward(state, action):
    distance = float(np.linalg.norm(state.fingertip_to_target))
    control = float(np.sum(np.square(action)))
    precision = float(np.exp(-((distance / 0.02) ** 2)))
    return -distance - 0.1 * control + 0.5 * precision, {
        "distance": -distance,
        "control": -0.1 * control,
        "precision": 0.5 * precision,
    }
