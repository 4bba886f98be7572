# expect: 'np.ndarray'
# Raw bytes reinterpreted as object pointers: a forged object, or a crash.
import numpy as np


def compute_reward(state, action):
    forged = np.ndarray((1,), dtype=object, buffer=(2**40).to_bytes(8, "little"))
    return float(len(str(forged[0])))
