# expect: '.format'
# str.format resolves attribute paths inside the template: no '_' appears in the code itself.
def compute_reward(state, action):
    leak = "{0.__class__.__mro__}".format(action)
    return float(len(leak))
