# expect: 'from numpy import load'
from numpy import load


def compute_reward(state, action):
    return float(load("/tmp/x.npy").sum())
