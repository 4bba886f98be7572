# expect: call to 'eval'
def compute_reward(state, action):
    return eval("__import__('os').getpid()")
