# expect: '.resize'
# Free an array's memory while a view still reads it.
import numpy as np


def compute_reward(state, action):
    owner = np.zeros(4)
    view = owner[:]
    owner.resize(10**6, refcheck=False)
    return float(view[0])
