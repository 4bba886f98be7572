# expect: it pads or repeats to any length
# One C call that builds a gigabyte string.
def compute_reward(state, action):
    return float(len("x".ljust(10**9)))
