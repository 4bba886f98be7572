# expect: 'match' statements
# Class patterns read attributes by keyword, out of sight of an attribute check.
def compute_reward(state, action):
    match action:
        case object(__class__=cls):
            return 0.0
    return 0.0
