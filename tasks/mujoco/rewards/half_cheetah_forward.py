# Run forward: reward the torso's forward velocity, charge for effort (the shape of
# gymnasium's HalfCheetah reward, written against the StateView).
import numpy as np


def compute_reward(state, action):
    forward = float(state.x_velocity)
    control = 0.1 * float(np.sum(np.square(action)))
    return forward - control, {"forward": forward, "control": -control}
