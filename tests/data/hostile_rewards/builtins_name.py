# expect: name '__builtins__'
def compute_reward(state, action):
    opener = __builtins__["open"]
    return 0.0
