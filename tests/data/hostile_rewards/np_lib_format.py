# expect: 'np.lib'
# numpy.lib.format opens memory-mapped files.
import numpy as np


def compute_reward(state, action):
    arr = np.lib.format.open_memmap("/tmp/x.npy", mode="w+", shape=(4,))
    return float(arr[0])
