# expect: call to 'getattr'
# Reach a forbidden numpy function through a string.
import numpy as np


def compute_reward(state, action):
    return float(getattr(np, "lo" + "ad")("/tmp/x.npy").sum())
