"""Rewards from words: :mod:`.text2reward` (an LLM writes a checked program, with repairs),
:mod:`.sketches` (typed reward terms read from the StateView, a JSON schema per task, compiled to a
checked batched program),
:mod:`.eureka` (an evolutionary search over such programs, judged by proxy training),
:mod:`.auto_mc` (Auto MC-Reward's designer, critic and trajectory analyzer) and :mod:`.library`
(accepted programs, retrieved as few-shot examples).
"""
