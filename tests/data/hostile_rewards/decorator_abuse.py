# expect: decorators are not allowed
# A decorator that swaps compute_reward for something else at definition time.
def swap(fn):
    return print


@swap
def compute_reward(state, action):
    return 0.0
