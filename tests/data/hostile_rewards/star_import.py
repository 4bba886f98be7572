# expect: import *
# A star import would bring np.load and friends in unnamed.
from numpy import *


def compute_reward(state, action):
    return float(sum(action))
