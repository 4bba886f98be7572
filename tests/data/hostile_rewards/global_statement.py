# expect: 'global' statements
# Keep state across calls by rebinding a module global: rewards stop being functions of the state.
calls = 0


def compute_reward(state, action):
    global calls
    calls += 1
    return float(calls)
