# expect: '.__class__'
# Attribute access hidden inside an f-string.
def compute_reward(state, action):
    name = f"{action.__class__}"
    return float(len(name))
