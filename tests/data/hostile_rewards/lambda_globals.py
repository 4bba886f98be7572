# expect: '.__globals__'
# Every function carries its module globals, builtins included.
def compute_reward(state, action):
    g = (lambda: 0).__globals__
    return float(len(g["__builtins__"]))
