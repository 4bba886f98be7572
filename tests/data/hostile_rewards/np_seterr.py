# expect: 'np.seterr'
# Silence floating-point errors for the whole training process.
import numpy as np


def compute_reward(state, action):
    np.seterr(all="ignore")
    return 0.0
