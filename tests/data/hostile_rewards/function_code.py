# expect: '.__code__'
# Rewrite a function's bytecode.
def compute_reward(state, action):
    code = compute_reward.__code__
    return float(len(code.co_code))
