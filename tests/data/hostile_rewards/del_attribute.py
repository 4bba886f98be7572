# expect: 'del' of attribute
def compute_reward(state, action):
    del state.fingertip_pos
    return 0.0
