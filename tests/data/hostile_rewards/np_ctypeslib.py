# expect: 'np.ctypeslib'
# Raw pointers through numpy's ctypes bridge.
import numpy as np


def compute_reward(state, action):
    lib = np.ctypeslib.load_library("libc", "/lib/x86_64-linux-gnu")
    return float(lib.getpid())
