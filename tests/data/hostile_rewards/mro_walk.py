# expect: '.mro'
# Reach object (and from there, every class) without an underscore.
def compute_reward(state, action):
    base = float.mro()[-1]
    return float(len(str(base)))
