# expect: '.setflags'
def compute_reward(state, action):
    state.fingertip_pos.setflags(write=True)
    state.fingertip_pos[:] = 0.0
    return 0.0
