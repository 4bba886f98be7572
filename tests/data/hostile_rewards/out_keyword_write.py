# expect: 'out=' is not allowed
# Write into the state's arrays through a ufunc's output argument.
import numpy as np


def compute_reward(state, action):
    np.multiply(state.fingertip_pos, 0.0, out=state.fingertip_pos)
    return 0.0
