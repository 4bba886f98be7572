# expect: '.__class__'
# Climb from a tuple to object and list every loaded class (classic jail escape).
def compute_reward(state, action):
    classes = ().__class__.__bases__[0].__subclasses__()
    return float(len(classes))
