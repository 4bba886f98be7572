"""Rewards for tasks that only score whole episodes: :mod:`.lare` (the episodic return as given,
and LaRe's LLM-written latent factors with a learned reward decoder).
"""
