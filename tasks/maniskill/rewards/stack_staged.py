# StackCube reward in the style of Text2Reward's manipulation programs: staged terms read from the
# StateView. Reach cube A; grasp it; carry it to the spot on top of cube B; once it sits on B,
# open the gripper and let it rest. The shaping terms add up to at most 1 per step and ManiSkill
# ends the episode on success (A on B, static, released), so the success bonus (10) beats what
# staying in the episode would still pay (at most 1 / (1 - gamma) = 5 at gamma 0.8).
import numpy as np


def compute_reward(state, action):
    reach = 2.0 * (1.0 - np.tanh(5.0 * float(state.tcp_to_cube_a_dist)))
    grasped = float(state.is_grasped)
    place = grasped * (1.0 - np.tanh(5.0 * float(state.cube_a_to_place_dist)))
    on_b = float(state.cube_a_on_b)
    release = on_b * (float(state.gripper_width) / 0.08 + 1.0 - np.tanh(10.0 * float(state.cube_a_speed)))
    stage = max(2.0 * grasped, 4.0 * on_b)  # later stages pay more than any earlier one can
    bonus = 10.0 * float(state.success)
    control = -0.01 * float(np.sum(np.square(action[:3])))
    scale = 1.0 / 9.0  # reach 2 + stage 4 + place 1 + release 2
    return scale * (reach + stage + place + release) + bonus + control, {
        "reach": scale * reach,
        "stage": scale * stage,
        "place": scale * place,
        "release": scale * release,
        "success": bonus,
        "control": control,
    }
