# Dense CollectWood reward in the style of Auto MC-Reward (Li et al. 2024): sign-only terms, so the
# scale of a distance never outweighs the goal. +1 when wood enters the inventory; +0.1 for a step
# that brings the nearest tree closer, -0.1 for one that takes it away (moving back and forth
# nets zero, so the shaping cannot be farmed); -1 for dying. No bonus for merely facing a tree:
# a policy could then stand facing one for the whole episode instead of collecting.
# Written against the shared Minecraft StateView names, so it also reads a MineDojo state.
import numpy as np


def compute_reward(state, action):
    collected = 1.0 if float(state.inv_wood_delta) > 0 else 0.0
    approach = float(state.nearest_tree_approach)
    closer = 0.1 * float(np.sign(approach))
    death = -1.0 if float(state.health) <= 0 else 0.0
    return collected + closer + death, {"collected": collected, "closer": closer, "death": death}
