# expect: use of builtin 'object'
def compute_reward(state, action):
    classes = object.subclasses() if object else []
    return float(len(classes))
