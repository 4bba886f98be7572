# expect: call to 'type'
# Build a class at run time without the 'class' keyword.
def compute_reward(state, action):
    Evil = type("Evil", (), {})
    return float(len(Evil.mro()))
