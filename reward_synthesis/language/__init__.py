"""Rewards from words: :mod:`.text2reward` (an LLM writes a checked program, with repairs),
:mod:`.eureka` (an evolutionary search over such programs, judged by proxy training),
:mod:`.auto_mc` (Auto MC-Reward's designer, critic and trajectory analyzer) and :mod:`.library`
(accepted programs, retrieved as few-shot examples).
"""
