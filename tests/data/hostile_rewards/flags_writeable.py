# expect: '.flags'
# Make the read-only state array writable, then change the simulator's view of the world.
def compute_reward(state, action):
    state.fingertip_pos.flags.writeable = True
    state.fingertip_pos[0] = 0.0
    return 0.0
