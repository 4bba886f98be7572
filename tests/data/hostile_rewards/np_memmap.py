# expect: 'np.memmap'
import numpy as np


def compute_reward(state, action):
    m = np.memmap("/tmp/x.bin", dtype="float64", mode="w+", shape=(10,))
    return float(m[0])
