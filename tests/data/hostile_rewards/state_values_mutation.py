# expect: '._values'
# Replace the state's frozen arrays behind its back.
import numpy as np


def compute_reward(state, action):
    state._values["fingertip_pos"] = np.zeros(3)
    return 0.0
