# expect: 'np.save'
# Exfiltrate states to disk.
import numpy as np


def compute_reward(state, action):
    np.save("/tmp/leak.npy", action)
    return 0.0
