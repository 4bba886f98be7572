"""``reward: {source: sketch, path: rewards/x.json}`` — a reward sketch file, compiled and checked.

The sketch (see :mod:`reward_synthesis.language.sketches`) is validated against the task's
StateView, compiled to a batched reward program and put through the pre-flight checks at build
time. The run keeps both: ``reward/sketch.json`` (the sketch as written) beside
``reward/program.py`` (the compiled program that trained); a resumed run uses the program.
"""

from __future__ import annotations

import json
from typing import Any

from reward_synthesis.program import CodeRewardSource, checked_program
from workbench.errors import TaskError
from workbench.reward import BuiltReward, validate_options

__all__ = ["SketchRewardSource", "SKETCH_FILE"]

SKETCH_FILE = "reward/sketch.json"


class SketchRewardSource(CodeRewardSource):
    """``reward: {source: sketch, path: rewards/x.json}`` — a hand-written (or synthesized) sketch.

    The options are the ``code`` source's (``path``, ``samples``, ``call_timeout_s``); ``path``
    names the sketch JSON file instead of a program."""

    @classmethod
    def validate_spec(cls, spec: Any, *, file: str) -> None:
        validate_options(cls.Options, spec, file)
        path = cls.program_path(spec)
        hint = "give a reward sketch .json file (see reward_synthesis.language.sketches), relative to the task file"
        if not path.is_file():
            raise TaskError(f"reward sketch not found: {path}", file=file, key="reward.path", hint=hint)
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            raise TaskError(f"reward sketch {path} is not JSON: {err}", file=file, key="reward.path",
                            hint=hint) from None

    @classmethod
    def build(cls, spec: Any, profile: Any, env: Any) -> BuiltReward:
        from reward_synthesis.language.sketches import SketchInvalid, compile_sketch, validate_sketch

        opts = cls.Options.model_validate(spec.reward.options)
        path = cls.program_path(spec)
        text = path.read_text(encoding="utf-8")
        try:
            sketch = validate_sketch(text, profile.schema, action_space=env.action_space)
            source = compile_sketch(sketch, profile.schema, action_space=env.action_space)
        except SketchInvalid as err:
            raise TaskError(f"reward sketch {path} does not fit this task: {err}",
                            file=spec.source_path, key="reward.path",
                            hint="name only the task's StateView fields (`workbench validate` lists them); "
                                 "the problems say which term and key") from None
        program, report = checked_program(source, f"reward sketch {path} (compiled)", profile, env, name="sketch",
                                          filename="reward/program.py", samples=opts.samples,
                                          call_timeout_s=opts.call_timeout_s)
        terms = ", ".join(t.name for t in sketch.terms)
        return BuiltReward(program, f"reward sketch {path.name} ({len(sketch.terms)} terms: {terms}; "
                                    f"sha256 {program.sha256[:12]})", source, report, {SKETCH_FILE: text},
                           {"sketch": sketch.model_dump(mode="json", exclude_none=True), "sketch_path": str(path)})
