# expect: use of builtin 'open'
# Smuggle a builtin in through a default argument.
def compute_reward(state, action, reader=open):
    return 0.0
