# expect: '._values'
# An assignment expression grabbing the state's private storage to mutate it.
def compute_reward(state, action):
    if (values := state._values) is not None:
        values.clear()
    return 0.0
