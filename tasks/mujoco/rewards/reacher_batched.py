# The batched twin of reacher_precise.py: the same reward, written for a whole vector step.
# compute_reward_batch (instead of compute_reward) declares the batched form: every state field
# has a leading env axis (state.fingertip_to_target is [N, 3]), action is [N, 2], and it returns
# totals [N] and components {name: [N]}. Each env's row is reduced on its own (axis=-1), so the
# result for N envs equals the result for each env alone (the pre-flight checks it).
import numpy as np


def compute_reward_batch(state, action):
    distance = np.linalg.norm(state.fingertip_to_target, axis=-1)
    control = np.sum(np.square(action), axis=-1)
    precision = np.exp(-((distance / 0.02) ** 2))
    return -distance - 0.1 * control + 0.5 * precision, {
        "distance": -distance,
        "control": -0.1 * control,
        "precision": 0.5 * precision,
    }
