# expect: call to 'globals'
# Fetch the real builtins out of the module globals.
def compute_reward(state, action):
    real = globals()["__builtins__"]
    return float(len(real))
