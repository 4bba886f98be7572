# VLM-RL-style driving terms (Huang et al. 2024, "VLM-RL"), written against the driving StateView
# (the field names the CARLA adapter shares). Each factor is in [0, 1]:
#   speed   1 inside desired_speed_range, ramping from 0 at a standstill up to its low end
#   center  1 on the lane centre, 0 at the lane's edge (half a lane width off)
#   angle   1 aligned with the lane, 0 at 90 degrees or more off it
# and collision is -1 once the ego has collided. The product pays only for driving that is fast
# enough, centred and aligned at once; highway_clg's combine multiplies in the CLIP goal score
# ("vlm * speed * center * angle + collision").
import math

import numpy as np

MAX_HEADING_ERROR = 0.5 * math.pi  # rad


def compute_reward(state, action):
    v = float(state.speed)
    low = float(state.desired_speed_range[0])
    high = float(state.desired_speed_range[1])
    # Above the range it falls as fast as it rises below it.
    miss = max(low - v, 0.0) + max(v - high, 0.0)
    speed = float(np.clip(1.0 - miss / max(low, 1.0), 0.0, 1.0))
    half_lane = max(float(state.lane_width) / 2.0, 1e-3)
    center = float(np.clip(1.0 - abs(float(state.lane_offset)) / half_lane, 0.0, 1.0))
    angle = float(np.clip(1.0 - abs(float(state.lane_heading_error)) / MAX_HEADING_ERROR, 0.0, 1.0))
    collision = -1.0 if float(state.collided) > 0.5 else 0.0
    return speed * center * angle + collision, {
        "speed": speed,
        "center": center,
        "angle": angle,
        "collision": collision,
    }
