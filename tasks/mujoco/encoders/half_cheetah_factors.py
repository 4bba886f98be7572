# LaRe latent factors for HalfCheetah, written by hand from the StateView (the same contract an
# LLM-written encoder has): a few interpretable numbers per step; the decoder learns their weights.
import numpy as np


def encode_factors(state, action):
    return {
        "forward_velocity": float(state.x_velocity),  # progress along +x
        "effort": float(np.sum(np.square(action))),  # actuation spent
        "torso_height": float(state.torso_height),  # posture: flipping shows up here
        "pitch": float(state.qpos[2]),  # torso pitch, rad
        "pitch_rate": float(abs(state.qvel[2])),  # rocking of the torso, rad/s
    }
