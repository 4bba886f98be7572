# expect: 'while' loops
# Hang training forever.
def compute_reward(state, action):
    while True:
        pass
    return 0.0
