# expect: ufunc.at writes in place
# Write into the (read-only) action through a ufunc's unbuffered in-place method.
import numpy as np


def compute_reward(state, action):
    np.add.at(action, 0, 1.0)
    return float(action[0])
