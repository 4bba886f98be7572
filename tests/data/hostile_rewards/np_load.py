# expect: 'np.load'
import numpy as np


def compute_reward(state, action):
    return float(np.load("/tmp/x.npy").sum())
