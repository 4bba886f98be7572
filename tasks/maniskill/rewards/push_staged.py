# PushCube reward in the style of Text2Reward's manipulation programs: staged terms read from the
# StateView. Reach the push position behind the cube; once there, pay for bringing the cube's
# centre to the goal while it stays on the table. The shaping terms add up to at most 1 per step
# and ManiSkill ends the episode on success, so the success bonus (10) must beat what staying in
# the episode would still pay (at most 1 / (1 - gamma) = 5 at gamma 0.8): with a bonus of 3 PPO
# learned to hover next to the goal and never finish (measured: 0.02 success).
import numpy as np


def compute_reward(state, action):
    reach = 1.0 - np.tanh(5.0 * float(state.tcp_to_push_pos_dist))
    at_cube = float(state.tcp_to_push_pos_dist) < 0.02 or float(state.tcp_to_cube_dist) < 0.035
    place = 1.0 - np.tanh(5.0 * float(state.cube_to_goal_xy_dist))
    on_table = 1.0 - np.tanh(20.0 * abs(float(state.cube_height)))
    push = (place + place * on_table) if at_cube else 0.0
    bonus = 10.0 * float(state.success)
    control = -0.01 * float(np.sum(np.square(action[:3])))
    return (reach + push) / 3.0 + bonus + control, {
        "reach": reach / 3.0,
        "push": push / 3.0,
        "success": bonus,
        "control": control,
    }
