# expect: import of 'numpy.ctypeslib'
import numpy.ctypeslib


def compute_reward(state, action):
    return 0.0
