# expect: 'np.linalg.lapack_lite'
import numpy as np


def compute_reward(state, action):
    return float(np.linalg.lapack_lite.dgelsd is None)
