# VLM-RL's state-side driving terms (Huang, Sheng et al. 2024, "reward_fn5"), written against the
# driving StateView (CARLA; the same field names as highway-env). Each factor is in [0, 1]:
#   speed   ramps 0 -> 1 up to 20 km/h, is 1 from 20 to 25 km/h, falls to 0 at 35 km/h
#   center  1 on the lane centre, 0 at 3 m or more from it
#   angle   1 aligned with the lane, 0 at 90 degrees or more off it
# and collision is -1 once the ego has collided. A product of factors pays only for driving that
# is fast enough, centred and aligned at once; the task's combine multiplies in the CLIP score.
import math


def compute_reward(state, action):
    kmh = max(3.6 * float(state.speed), 0.0)  # rolling backwards earns nothing
    if kmh < 20.0:
        speed = kmh / 20.0
    elif kmh <= 25.0:
        speed = 1.0
    else:
        speed = max(1.0 - (kmh - 25.0) / (35.0 - 25.0), 0.0)
    center = max(1.0 - abs(float(state.lane_offset)) / 3.0, 0.0)
    angle = max(1.0 - abs(float(state.lane_heading_error)) / (0.5 * math.pi), 0.0)
    collision = -1.0 if float(state.collided) > 0.5 else 0.0
    total = speed * center * angle + collision
    return total, {"speed": speed, "center": center, "angle": angle, "collision": collision}
