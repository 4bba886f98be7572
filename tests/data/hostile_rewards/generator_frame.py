# expect: '.gi_frame'
# No '_' in any attribute: a generator's frame leads to the caller's globals and real builtins.
def compute_reward(state, action):
    gen = (x for x in [1])
    outer = gen.gi_frame.f_back.f_globals
    return float(len(outer))
