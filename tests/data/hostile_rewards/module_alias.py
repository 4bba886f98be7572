# expect: module 'np' may only be used
# Alias the module so a name-based check sees 'm.load', not 'np.load'.
import numpy as np


def compute_reward(state, action):
    m = np
    return float(m.load("/tmp/x.npy").sum())
