# LaRe latent factors for Hopper, written by hand from the StateView (the same contract an
# LLM-written encoder has): progress, staying upright, effort.
import numpy as np


def encode_factors(state, action):
    return {
        "forward_velocity": float(state.x_velocity),  # progress along +x
        "height_margin": float(state.torso_height) - 0.7,  # Hopper falls below 0.7 m
        "tilt": float(abs(state.qpos[2])),  # |torso angle|, falls beyond 0.2 rad
        "effort": float(np.sum(np.square(action))),  # actuation spent
        "vertical_speed": float(abs(state.qvel[1])),  # bouncing, m/s
    }
