# expect: 'with' statements
import numpy as np


def compute_reward(state, action):
    with np.errstate(all="ignore"):
        return float(np.sum(action))
