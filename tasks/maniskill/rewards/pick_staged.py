# PickCube reward in the style of Text2Reward's manipulation programs: staged terms read from the
# StateView. Reach the cube; grasp it; carry it to the goal while grasped; once there, hold the
# arm still (ManiSkill's success needs a static robot). The shaping terms add up to at most 1 per
# step and ManiSkill ends the episode on success, so the success bonus (10) beats what staying in
# the episode would still pay (at most 1 / (1 - gamma) = 5 at gamma 0.8).
import numpy as np


def compute_reward(state, action):
    reach = 1.0 - np.tanh(5.0 * float(state.tcp_to_cube_dist))
    grasped = float(state.is_grasped)
    place = grasped * (1.0 - np.tanh(5.0 * float(state.cube_to_goal_dist)))
    placed = float(state.cube_to_goal_dist) <= 0.025
    still = (1.0 - np.tanh(5.0 * float(state.arm_joint_speed))) if placed else 0.0
    bonus = 10.0 * float(state.success)
    control = -0.01 * float(np.sum(np.square(action[:3])))
    return (reach + grasped + place + still) / 4.0 + bonus + control, {
        "reach": reach / 4.0,
        "grasp": grasped / 4.0,
        "place": place / 4.0,
        "still": still / 4.0,
        "success": bonus,
        "control": control,
    }
