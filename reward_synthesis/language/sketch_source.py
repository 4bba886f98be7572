"""``reward: {source: sketch, path: rewards/x.json}`` — a reward sketch file, compiled and checked.

The sketch (see :mod:`reward_synthesis.language.sketches`) is validated against the task's
StateView, compiled to a batched reward program and put through the pre-flight checks at build
time. The run keeps both: ``reward/sketch.json`` (the sketch as written) beside
``reward/program.py`` (the compiled program that trained); a resumed run uses the program.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from reward_synthesis.safety.guard import DEFAULT_TIMEOUT_S
from workbench.errors import RewardCodeRejected, TaskError
from workbench.reward import BuiltReward, SourceOptions, validate_options

__all__ = ["SketchRewardSource", "SKETCH_FILE"]

SKETCH_FILE = "reward/sketch.json"


class SketchRewardSource:
    """``reward: {source: sketch, path: rewards/x.json}`` — a hand-written (or synthesized) sketch."""

    class Options(SourceOptions):
        path: str = Field(description="reward sketch JSON file, relative to the task file")
        samples: int = Field(256, gt=0, le=100_000, description="states sampled for the pre-flight checks")
        call_timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=600,
                                      description="run-time guard: the longest one reward call may take")

    @classmethod
    def sketch_path(cls, spec: Any) -> Path:
        opts = cls.Options.model_validate(spec.reward.options)
        path = Path(opts.path)
        return path if path.is_absolute() else spec.base_dir / path

    @classmethod
    def validate_spec(cls, spec: Any, *, file: str) -> None:
        validate_options(cls.Options, spec, file)
        path = cls.sketch_path(spec)
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
        from reward_synthesis.program import CodeRewardProgram
        from reward_synthesis.safety.checks import check_inputs, preflight

        opts = cls.Options.model_validate(spec.reward.options)
        path = cls.sketch_path(spec)
        text = path.read_text(encoding="utf-8")
        try:
            sketch = validate_sketch(text, profile.schema, action_space=env.action_space)
            source = compile_sketch(sketch, profile.schema, action_space=env.action_space)
        except SketchInvalid as err:
            raise TaskError(f"reward sketch {path} does not fit this task: {err}",
                            file=spec.source_path, key="reward.path",
                            hint="name only the task's StateView fields (`workbench validate` lists them); "
                                 "the problems say which term and key") from None
        states, preference = check_inputs(env, profile, n=opts.samples)
        report = preflight(source, states, program=f"{path.name} (compiled)", preference=preference)
        if not report.accepted:
            raise RewardCodeRejected(
                f"reward sketch {path} compiled, but its program was rejected by the pre-flight checks:\n"
                f"{report.render()}", report)
        program = CodeRewardProgram(source, name="sketch", filename="reward/program.py", timeout_s=opts.call_timeout_s)
        terms = ", ".join(t.name for t in sketch.terms)
        return BuiltReward(program, f"reward sketch {path.name} ({len(sketch.terms)} terms: {terms}; "
                                    f"sha256 {program.sha256[:12]})", source, report, {SKETCH_FILE: text},
                           {"sketch": sketch.model_dump(mode="json", exclude_none=True), "sketch_path": str(path)})
