"""Task YAML -> :class:`TaskSpec`: strict validation whose errors name the file, the key and the fix.

Parsing is ``yaml.SafeLoader`` plus two guards: a bound on alias expansion (a "billion laughs"
file is rejected, not expanded) and YAML 1.2-style numbers so ``1e6`` and ``3e-4`` read as
numbers, as a user expects. Sections owned by plug-ins (the reward source's options, the
learner's hyperparameters) are validated by the plug-in after the core schema passes.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.errors import TaskError
from workbench.registry import LEARNERS, REWARDS, SIMS, PluginError, Registry, UnknownName

__all__ = [
    "SimSpec", "RewardSpec", "LearnerSpec", "TrainingSpec", "EvaluationSpec", "TaskSpec",
    "load_task", "read_bounded", "parse_overrides", "pydantic_error_to_task_error", "validate_sim_kwargs",
    "validate_learner_hyperparams",
    "MAX_TASK_BYTES",
]

MAX_TASK_BYTES = 1 << 20
MAX_ALIASES = 64
MAX_NODES = 100_000
MAX_DEPTH = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SimSpec(_Strict):
    """Which simulator and which env in it."""

    name: str = Field("mujoco", description="simulator adapter: `workbench list sims`")
    env_id: str = Field(description="the env in that simulator, e.g. Reacher-v5")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to the env constructor")
    max_episode_steps: int | None = Field(None, gt=0, description="episode length (default: the env's)")


class RewardSpec(BaseModel):
    """``source`` picks the reward source; its other keys are that source's options."""

    model_config = ConfigDict(extra="allow")
    source: str = Field("env", description="env | code | ... (`workbench list rewards`)")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LearnerSpec(_Strict):
    name: str = Field(description="ppo | sac | an installed plug-in (`workbench list learners`)")
    policy: str = Field("MlpPolicy", description="SB3 policy class name")
    hyperparams: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the SB3 constructor, same names"
    )
    normalize: bool = Field(False, description="wrap the envs in VecNormalize (saved with the model)")
    torch_threads: int = Field(1, gt=0, description="torch CPU threads; 1 is fastest for small MLPs")

    @field_validator("hyperparams")
    @classmethod
    def _whole_numbers_are_ints(cls, v: dict[str, Any]) -> dict[str, Any]:
        """``buffer_size: 1e6`` reads as the float 1000000.0 (YAML 1.2 numbers), which SB3 cannot
        size a buffer with: whole numbers become ints, as ``training.total_steps`` does."""
        def whole(x: Any) -> Any:
            if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
                return int(x)
            if isinstance(x, dict):
                return {k: whole(y) for k, y in x.items()}
            if isinstance(x, list):
                return [whole(y) for y in x]
            return x

        return whole(v)


class TrainingSpec(_Strict):
    total_steps: int = Field(gt=0, description="environment steps, summed over envs")
    n_envs: int = Field(1, gt=0, le=256)
    vec_env: Literal["dummy", "subproc"] = "dummy"
    seed: int = Field(0, ge=0, lt=2**32, description="numpy, torch and SB3 take 0 <= seed < 2**32")
    checkpoint_every: int = Field(10_000, gt=0, description="steps between checkpoints")
    eval_every: int = Field(0, ge=0, description="steps between progress evaluations; 0 = off")
    eval_episodes: int = Field(5, gt=0, description="episodes per progress evaluation")


class EvaluationSpec(_Strict):
    episodes: int = Field(20, gt=0)
    deterministic: bool = True
    video: bool = True
    video_episodes: int = Field(2, ge=0)
    success_threshold: float | None = Field(None, description="override the task's success threshold")
    sim_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="env keyword arguments for evaluation only, over sim.kwargs (e.g. held-out instructions)")


class TaskSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="used in run directory names")
    sim: SimSpec
    goal: str | None = Field(None, description="the goal in words")
    reward: RewardSpec = Field(default_factory=RewardSpec)
    learner: LearnerSpec
    training: TrainingSpec
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    # Where the task was read from; relative paths in the task are resolved against it.
    source_path: str | None = Field(None, exclude=True)

    @property
    def base_dir(self) -> Path:
        return Path(self.source_path).parent if self.source_path else Path.cwd()

    def resolved_dict(self) -> dict[str, Any]:
        """The fully-resolved config as plain data (what a run directory records)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- YAML parsing

_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _TaskLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e6`` as a float, refuses alias bombs, nesting deeper than
    MAX_DEPTH (PyYAML's composer recurses: a RecursionError otherwise) and duplicate keys."""

    _aliases = 0
    _nodes = 0
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} YAML aliases (possible alias bomb)")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise yaml.YAMLError(f"more than {MAX_NODES} YAML nodes")
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # keys of a merged mapping may be overridden, as YAML says
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # unhashable: the base constructor reports it
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {str(key)[:80]!r} (first at line {first.start_mark.line + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


# Copy the resolver table so the float change does not leak into yaml.SafeLoader.
_TaskLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_TaskLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _count_expanded(value: Any, budget: list[int]) -> None:
    """Shared (aliased) subtrees are walked once per reference: bound the logical size too."""
    budget[0] -= 1
    if budget[0] < 0:
        raise yaml.YAMLError(f"document expands to more than {MAX_NODES} values (alias bomb?)")
    if isinstance(value, dict):
        for k, v in value.items():
            _count_expanded(k, budget)
            _count_expanded(v, budget)
    elif isinstance(value, list):
        for v in value:
            _count_expanded(v, budget)


def parse_yaml(text: str, *, file: str) -> Any:
    loader = _TaskLoader(text)
    try:
        data = loader.get_single_data()
        _count_expanded(data, [MAX_NODES])
        return data
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = err.problem or str(err)
        hint = ("remove the tag: task files are plain YAML" if "tag" in problem
                else "keep one of the two: a key may appear once per mapping" if problem.startswith("duplicate key")
                else f"flatten the structure: a task nests at most {MAX_DEPTH} levels" if "levels deep" in problem
                else "fix the YAML syntax")
        raise TaskError(f"not valid YAML at {where}: {problem}", file=file, hint=hint) from None
    except RecursionError:  # a guard above missed a recursive path: still one message
        raise TaskError("YAML nested too deeply", file=file,
                        hint=f"flatten the structure: a task nests at most {MAX_DEPTH} levels") from None
    except yaml.YAMLError as err:
        raise TaskError(f"not usable YAML: {err}", file=file, hint="write the task without anchors/aliases") from None
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- overrides

def parse_overrides(items: list[str]) -> list[tuple[list[str], Any]]:
    """``["training.total_steps=1e4", ...]`` -> ``[(["training", "total_steps"], 10000.0), ...]``."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(p.isidentifier() or p.replace("-", "_").isidentifier() for p in path):
            raise TaskError(f"bad override {item!r}", key="--set",
                            hint="write --set key.path=value, e.g. --set training.total_steps=2e4")
        out.append((path, parse_yaml(raw, file="--set") if raw.strip() else None))
    return out


def _apply_override(data: dict[str, Any], path: list[str], value: Any, *, file: str) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise TaskError(f"cannot set inside {'.'.join(path[: i + 1])}: it is not a mapping",
                            file=file, key=".".join(path), hint="override a key of a mapping section")
        node = child
    node[path[-1]] = value


# --------------------------------------------------------------------------- errors

def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of ``loc`` (to list its valid keys)."""
    model: Any = TaskSpec
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def pydantic_error_to_task_error(err: ValidationError, *, file: str, prefix: str = "",
                                 model: type[BaseModel] | None = None) -> TaskError:
    lines = []
    first_key = None
    for e in err.errors():
        loc = tuple(e["loc"])
        key = prefix + ".".join(str(p) for p in loc)
        first_key = first_key or key
        if e["type"] == "extra_forbidden":
            owner = model if model is not None and len(loc) == 1 else _model_at(loc)
            if owner is None:
                valid = "valid keys: see the task reference in README.md"
            elif owner.model_fields:
                valid = f"valid keys here: {', '.join(owner.model_fields)}"
            else:
                valid = "this section takes no other keys"
            lines.append(f"{key}: unknown key; {valid}")
        elif e["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {msg} (got {e.get('input')!r})")
    message = "invalid task:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0].split(": ", 1)[1]
    return TaskError(message, file=file, key=first_key if len(lines) == 1 else None,
                     hint="see `workbench validate` and the task reference in README.md")


_Options = TypeVar("_Options", bound=BaseModel)


def validate_learner_hyperparams(model: type[_Options], raw: Mapping[str, Any], *, learner: str, keys: set[str],
                                 file: str, hint: str) -> _Options:
    """A learner's ``learner.hyperparams`` checked against its options ``model``, of which it reads
    only ``keys`` (a key it does not read is a mistake, said with the closest valid one); a mistake
    is one TaskError keyed ``learner.hyperparams.<name>``, ``hint`` saying where each key is explained."""
    import difflib

    valid = sorted(keys)
    for name in raw:
        if name not in keys:
            close = difflib.get_close_matches(str(name), valid, n=1)
            near = f"did you mean {close[0]!r}? " if close else ""
            raise TaskError(f"{learner} has no hyperparameter {name!r}", file=file,
                            key=f"learner.hyperparams.{name}", hint=f"{near}valid: {', '.join(valid)}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or next(iter(raw), "")
        msg = e["msg"].removeprefix("Value error, ")
        raise TaskError(f"{msg} (got {str(e.get('input'))[:80]})", file=file, key=f"learner.hyperparams.{where}",
                        hint=hint) from None


def validate_sim_kwargs(model: type[_Options], kwargs: Mapping[str, Any]) -> _Options:
    """An adapter's ``sim.kwargs`` checked against its options model. A mistake is one TaskError
    keyed ``sim.kwargs.<name>``; Task.build adds the task file."""
    try:
        return model.model_validate(dict(kwargs))
    except ValidationError as err:
        e = pydantic_error_to_task_error(err, file="", prefix="sim.kwargs.", model=model)
        raise TaskError(e.message, key=e.key, hint=e.hint) from None


# --------------------------------------------------------------------------- loading

def read_bounded(path: Path, *, limit: int, file: str, key: str | None = None, what: str = "task file",
                 hint: str = "keep data (demos, models) in separate files and reference them by path") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or a TaskError. Never blocks on a
    FIFO or a device (they are refused before and after opening, without waiting for a writer) and
    never reads more than ``limit + 1`` bytes, whatever the file's size."""

    def refuse(st: os.stat_result) -> None:
        mode = st.st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")
            raise TaskError(f"is {kind}, not a regular file", file=file, key=key,
                            hint=f"point at a {what} (a regular file)")
        if st.st_size > limit:
            raise TaskError(f"file is {st.st_size} bytes; a {what} is at most {limit}", file=file, key=key,
                            hint=hint)

    try:
        refuse(os.stat(path))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise TaskError(f"no such {what}", file=file, key=key,
                        hint="pass a path like tasks/mujoco/reacher.yaml (`workbench list tasks`)"
                        if what == "task file" else f"check the {what}'s path") from None
    except OSError as err:
        raise TaskError(f"cannot read: {err.strerror}", file=file, key=key,
                        hint=f"check the {what}'s path and permissions") from None
    with os.fdopen(fd, "rb") as fh:
        refuse(os.fstat(fh.fileno()))  # the path may have been swapped between stat and open
        raw = fh.read(limit + 1)
    if len(raw) > limit:
        raise TaskError(f"file is more than {limit} bytes; a {what} is at most {limit}", file=file, key=key, hint=hint)
    return raw


def load_task(path: str | Path, overrides: list[str] | None = None, *, plugins: bool = True,
              learner: bool = True) -> TaskSpec:
    """Read, validate and resolve a task file. Raises :class:`TaskError` on any user mistake.

    ``plugins=False`` checks the file and the plug-in names without importing any plug-in
    (see :func:`validate_task_data`); ``learner=False`` leaves the learner's own section unchecked."""
    path = Path(path)
    file = str(path)
    raw = read_bounded(path, limit=MAX_TASK_BYTES, file=file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TaskError("not UTF-8 text", file=file, hint="save the task as UTF-8 YAML") from None
    data = parse_yaml(text, file=file)
    if not isinstance(data, dict):
        raise TaskError(f"the top level must be a mapping of keys, got {type(data).__name__}",
                        file=file, hint="start the file with keys like `name:`, `sim:`, `learner:`, `training:`")
    if any(not isinstance(k, str) for k in data):
        raise TaskError("every top-level key must be a string", file=file,
                        hint="use keys like `sim:`, `learner:`, `training:` (`workbench validate` explains each)")
    data.setdefault("name", path.stem)
    for keypath, value in parse_overrides(overrides or []):
        _apply_override(data, keypath, value, file=file)
    data["source_path"] = str(path.resolve())
    return validate_task_data(data, file=file, plugins=plugins, learner=learner)


def _plugins(spec: TaskSpec) -> tuple[tuple[Registry, str], ...]:
    return ((SIMS, spec.sim.name), (REWARDS, spec.reward.source), (LEARNERS, spec.learner.name))


def validate_task_data(data: dict[str, Any], *, file: str, plugins: bool = True, learner: bool = True) -> TaskSpec:
    """Core schema, then the plug-in sections (reward source options, learner hyperparams).

    Plug-in names are checked against the registries' name lists first (built-in names and
    installed entry points; nothing is imported). ``plugins=False`` stops there (``workbench list
    tasks``); otherwise each plug-in is imported, checked against its contract, and validates its
    own section. ``learner=False`` skips the learner's section: ``workbench data collect`` records
    in a task without training it (its learner may name the very dataset being recorded).
    """
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as err:
        raise pydantic_error_to_task_error(err, file=file) from None
    for registry, name in _plugins(spec):
        if name not in registry:
            e = UnknownName(registry.kind, name, registry.names(), key=registry.key, group=registry.group)
            raise TaskError(e.message, file=file, key=e.key, hint=e.hint)
    if not plugins:
        return spec
    for registry, name in _plugins(spec):
        try:
            plugin = registry.get(name)
        except PluginError as err:
            raise TaskError(err.message, file=file, key=err.key, hint=err.hint) from None
        if registry is SIMS or (registry is LEARNERS and not learner):
            continue  # a sim adapter checks sim.kwargs when it makes the env
        plugin.validate_spec(spec, file=file)
    return spec
