# expect: names starting with '__' are reserved
# Reach the namespace's builtins dict to swap range for the unbounded one.
def compute_reward(state, action):
    __builtins__["range"] = None
    return 0.0
