"""Rewards from camera frames: :mod:`.vlm` (open_clip backbones), :mod:`.vlm_rewards` (CLIP goal
rewards: VLM-RL's contrasting goals, VLM-RM's goal baseline), :mod:`.combine` (a frame reward
combined with state terms) and :mod:`.perceptual` (rewards learned from a few demonstrations).
"""
