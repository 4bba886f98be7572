# expect: '.ctypes'
# The raw address of an array, a first step to arbitrary memory writes.
def compute_reward(state, action):
    return float(action.ctypes.data)
