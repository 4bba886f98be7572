# expect: '.tofile'
# Write an array straight to a file.
import numpy as np


def compute_reward(state, action):
    np.asarray(action).tofile("/tmp/leak.bin")
    return 0.0
