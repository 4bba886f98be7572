"""The gate every reward program passes, in the order it meets them: :mod:`.sandbox` (the static
allow-list and the restricted namespace), :mod:`.worker` (the isolated process the pre-flight runs
in), :mod:`.checks` (the pre-flight checks on sampled states), :mod:`.guard` and :mod:`.limits` (what
bounds every call during training).
"""
