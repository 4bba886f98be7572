# expect: call to 'compile'
def compute_reward(state, action):
    code = compile("1", "<x>", "eval")
    return 0.0
