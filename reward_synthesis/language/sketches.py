"""Reward sketches: a small typed vocabulary of reward terms, a JSON schema per task, and a compiler.

A **sketch** is what a (small) language model may write instead of free reward code (Language to
Rewards, Yu et al. 2023): a list of *terms*, each a small record that names StateView fields, a
transform and a weight. Its JSON schema is generated from the task's StateView
(:func:`sketch_schema`), so a decoder constrained by it can only name the task's fields, and only
where a term allows them; :func:`validate_sketch` checks a sketch against the task before any code
is made; :func:`compile_sketch` turns it into a normal, readable batched reward program
(``compute_reward_batch``) that goes through the sandbox and the pre-flight checks like any other.

The vocabulary
--------------
Every term has a ``name`` (its component name: ``info["reward/<name>"]``, lower-case identifier)
and a ``weight`` in [-10, 10]. A term computes a *goodness* ``g`` that grows as its objective is
met; the component is ``weight * g``. A positive weight pursues the objective, a negative weight
avoids it. The total is the sum of the components.

``distance``   ``{a, b}``: closeness of two fields of equal shape and unit (``|a - b|``, the
               Euclidean norm over the last axis), or, with ``b`` null, the magnitude ``|a|`` of
               one field (e.g. ``fingertip_to_target``; a scalar distance such as
               ``nearest_tree_dist``). Only vector fields pair: two scalars of one unit are
               rarely two points (``x_position`` and ``torso_height`` are both metres); a scalar
               is used alone or by ``target``. A field whose name relates two things (``x_to_y``) is
               already a difference or distance: it is only ever used alone; a 0/1 or count
               field is a flag, never a distance. A cost: ``transform`` any.
``target``     ``{field, target}``: a scalar field driven toward a value; the cost is
               ``|field - target|``; ``transform`` any.
``scalar``     ``{field, objective}``: a scalar field maximised or minimised (``x_velocity``,
               ``car_vel_toward_ball``); a gain: ``transform`` linear or tanh.
``axis``       ``{field, axis, objective}``: one component of a vector field maximised or
               minimised (velocity along an axis: ``puck_vel``, axis 0); a gain.
``flag``       ``{field}``: 1 while a 0/1 or count field is > 0.5 (``is_grasped``,
               ``ach_collect_wood``, ``inv_wood_delta``), else 0.
``action``     the squared action magnitude ``sum(action**2)`` as a cost (continuous actions
               only; absent from the schema of a task with discrete actions).
``bonus``      ``{when}``: 1 while a condition holds, else 0 (a success or threshold bonus).
``stage``      ``{when, terms}``: inner terms (any kind but ``stage``) that count only while the
               condition holds, as in Text2Reward's staged manipulation rewards; the stage's own
               ``weight`` is paid while it holds (0 = no entry bonus).

The sketch's ``gain`` (in (0, 1], default 1) multiplies every component. The model never writes
it: the workbench sets it to ``1 - gamma`` of the task's learner (:func:`fill_gain`).

Conditions (``when``): ``{"kind": "distance", "a", "b", "below"}`` (``|a - b| < below``),
``{"kind": "scalar", "field", "op": "above" | "below", "value"}``, ``{"kind": "axis", "field",
"axis", "op", "value"}`` and ``{"kind": "flag", "field"}`` (field > 0.5).

Transforms (``{"kind", "scale"}``, scale in (0, 1e4], in the quantity's own unit). For a cost
``c >= 0`` (distance, target, action): linear ``-c / scale``, exp kernel ``exp(-c / scale)``,
tanh ``1 - tanh(c / scale)``. For a gain ``x`` (``scalar``, ``axis``; ``minimize`` uses
``-x``): linear ``x / scale``, tanh ``tanh(x / scale)``. An exp kernel is a cost transform only.

An example (Reacher)::

    {"name": "reach", "goal": "Move the fingertip onto the target.",
     "terms": [
       {"kind": "distance", "name": "distance", "a": "fingertip_pos", "b": "target_pos",
        "transform": {"kind": "linear", "scale": 1.0}, "weight": 1.0},
       {"kind": "action", "name": "control", "transform": {"kind": "linear", "scale": 1.0},
        "weight": 0.1},
       {"kind": "bonus", "name": "arrived", "weight": 0.5,
        "when": {"kind": "distance", "a": "fingertip_pos", "b": "target_pos", "below": 0.02}}]}

Fields of more than one axis (e.g. CARLA's ``route_ahead``) are not offered to any term.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from workbench.errors import WorkbenchError
from workbench.state import Field as StateField
from workbench.state import StateSchema

__all__ = ["Sketch", "Transform", "GainTransform", "DistanceTerm", "TargetTerm", "ScalarTerm", "AxisTerm",
           "FlagTerm", "ActionTerm", "BonusTerm", "StageTerm", "DistanceCondition", "ScalarCondition",
           "AxisCondition", "FlagCondition", "SketchInvalid", "FLAG_UNITS", "MAX_TERMS", "MAX_STAGE_TERMS",
           "WEIGHT_BOUND", "VALUE_BOUND", "SCALE_BOUND", "sketch_schema", "validate_sketch", "compile_sketch",
           "fill_scales", "fill_gain", "fill_thresholds", "unique_names", "settle_action_costs", "THRESHOLD_QUANTILE",
           "sketch_fields", "named_fields", "TermKey", "term_key"]

MAX_TERMS = 12
MAX_STAGE_TERMS = 8
WEIGHT_BOUND = 10.0
VALUE_BOUND = 1e4  # targets, thresholds
SCALE_BOUND = 1e4
FLAG_UNITS = frozenset({"0/1", "count"})
# Fields whose norm never changes (a direction, an orientation): neither a position nor a size, so
# never a distance. Measured: Gemma 3 270M wrote |car_to_ball_dir| (always 1) for "touch the ball"
# in 6 of 6 replies, each rejected as constant.
UNIT_NORM_UNITS = ("unit vector", "quaternion")
_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
_FIELD_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
_MAX_GOAL = 500
THRESHOLD_QUANTILE = 0.1  # a distance condition's filled threshold: "closer than on 90% of the samples"

ComponentName = Annotated[str, StringConstraints(pattern=_NAME_PATTERN)]
FieldName = Annotated[str, StringConstraints(pattern=_FIELD_PATTERN)]
Weight = Annotated[float, Field(ge=-WEIGHT_BOUND, le=WEIGHT_BOUND, allow_inf_nan=False)]
Scale = Annotated[float, Field(gt=0, le=SCALE_BOUND, allow_inf_nan=False)]
Gain = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Value = Annotated[float, Field(ge=-VALUE_BOUND, le=VALUE_BOUND, allow_inf_nan=False)]
AxisIndex = Annotated[int, Field(ge=0, le=63)]
Objective = Literal["maximize", "minimize"]


class SketchInvalid(WorkbenchError, ValueError):
    """A sketch that does not fit the vocabulary or the task. ``location`` names the place
    (``terms[1].b``); ``problems`` holds every message (the first is ``str(err)``'s head)."""

    def __init__(self, problems: Sequence[str], *, task: str = "", location: str = ""):
        self.problems = list(problems)
        self.location = location
        self.task = task
        head = f"reward sketch for {task}" if task else "reward sketch"
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head} rejected ({len(self.problems)} problem"
                         f"{'s' if len(self.problems) != 1 else ''}):\n{listing}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- transforms ---------------------------------------------------------------------------------


class Transform(_Model):
    """For a cost ``c >= 0``: linear ``-c/scale``, exp ``exp(-c/scale)``, tanh ``1 - tanh(c/scale)``."""

    kind: Literal["linear", "exp", "tanh"] = "linear"
    scale: Scale = 1.0


class GainTransform(_Model):
    """For a gain ``x``: linear ``x/scale``, tanh ``tanh(x/scale)``."""

    kind: Literal["linear", "tanh"] = "linear"
    scale: Scale = 1.0


# -- conditions ---------------------------------------------------------------------------------


class DistanceCondition(_Model):
    """``|a - b| < below`` (``|a|`` when ``b`` is null)."""

    kind: Literal["distance"]
    a: FieldName
    b: FieldName | None = None
    below: Scale


class ScalarCondition(_Model):
    """``field > value`` (``op: above``) or ``field < value`` (``op: below``)."""

    kind: Literal["scalar"]
    field: FieldName
    op: Literal["above", "below"]
    value: Value


class AxisCondition(_Model):
    """``field[axis] > value`` or ``< value``."""

    kind: Literal["axis"]
    field: FieldName
    axis: AxisIndex
    op: Literal["above", "below"]
    value: Value


class FlagCondition(_Model):
    """``field > 0.5``."""

    kind: Literal["flag"]
    field: FieldName


Condition = Annotated[DistanceCondition | ScalarCondition | AxisCondition | FlagCondition,
                      Field(discriminator="kind")]


# -- terms --------------------------------------------------------------------------------------


class _Term(_Model):
    name: ComponentName
    weight: Weight = 1.0


class DistanceTerm(_Term):
    kind: Literal["distance"]
    a: FieldName
    b: FieldName | None = None
    transform: Transform = Transform()


class TargetTerm(_Term):
    kind: Literal["target"]
    field: FieldName
    target: Value
    transform: Transform = Transform()


class ScalarTerm(_Term):
    kind: Literal["scalar"]
    field: FieldName
    objective: Objective = "maximize"
    transform: GainTransform = GainTransform()


class AxisTerm(_Term):
    kind: Literal["axis"]
    field: FieldName
    axis: AxisIndex
    objective: Objective = "maximize"
    transform: GainTransform = GainTransform()


class FlagTerm(_Term):
    kind: Literal["flag"]
    field: FieldName


class ActionTerm(_Term):
    kind: Literal["action"]
    transform: Transform = Transform()


class BonusTerm(_Term):
    kind: Literal["bonus"]
    when: Condition


InnerTerm = Annotated[DistanceTerm | TargetTerm | ScalarTerm | AxisTerm | FlagTerm | ActionTerm | BonusTerm,
                      Field(discriminator="kind")]


class StageTerm(_Term):
    """Inner terms that count only while ``when`` holds; ``weight`` is paid while it holds."""

    kind: Literal["stage"]
    weight: Weight = 0.0
    when: Condition
    terms: Annotated[list[InnerTerm], Field(min_length=1, max_length=MAX_STAGE_TERMS)]


Term = Annotated[DistanceTerm | TargetTerm | ScalarTerm | AxisTerm | FlagTerm | ActionTerm | BonusTerm | StageTerm,
                 Field(discriminator="kind")]


class Sketch(_Model):
    """A reward sketch: ``terms`` (1..12) and optionally a ``name`` and the ``goal`` in words."""

    name: ComponentName | None = None
    goal: Annotated[str, StringConstraints(max_length=_MAX_GOAL)] | None = None
    terms: Annotated[list[Term], Field(min_length=1, max_length=MAX_TERMS)]
    gain: Gain | None = None  # every component times this (None: 1); set by the workbench, fill_gain

    @model_validator(mode="after")
    def _unique_names(self) -> Sketch:
        seen: dict[str, str] = {}
        for where, term in _walk(self.terms):
            if term.name in seen:
                raise ValueError(f"component name {term.name!r} is used twice ({seen[term.name]} and {where}); "
                                 "every term needs its own name")
            seen[term.name] = where
        return self


def _walk(terms: Sequence[Any], prefix: str = "terms") -> Iterator[tuple[str, Any]]:
    """``("terms[2].terms[0]", term)`` for every term, stages' inner terms after their stage."""
    for i, term in enumerate(terms):
        where = f"{prefix}[{i}]"
        yield where, term
        if isinstance(term, StageTerm):
            yield from _walk(term.terms, f"{where}.terms")


# -- which fields fit where -----------------------------------------------------------------------


# A term the decoding schema can leave out: ``(kind, field, detail)``. For a distance ``field`` is
# ``a`` and ``detail`` its partner ``b`` (None: ``|a|``); for a scalar or axis term ``detail`` is the
# objective (the other one stays offered); for a target or flag term it is None (the field goes).
TermKey = tuple[str, str, str | None]
_OBJECTIVES = ("maximize", "minimize")


def term_key(term: Mapping[str, Any]) -> TermKey | None:
    """The key :func:`sketch_schema`'s ``exclude_terms`` takes for one term of a sketch's JSON
    (None for a kind that names no field: action, bonus, stage)."""
    kind = term.get("kind")
    if kind == "distance" and isinstance(term.get("a"), str):
        b = term.get("b")
        return ("distance", term["a"], b if isinstance(b, str) else None)
    if kind in ("scalar", "axis") and isinstance(term.get("field"), str):
        objective = term.get("objective", "maximize")
        return (kind, term["field"], objective if objective in _OBJECTIVES else "maximize")
    if kind in ("target", "flag") and isinstance(term.get("field"), str):
        return (kind, term["field"], None)
    return None


class _Slots:
    """The task's fields sorted by what a term may do with them."""

    def __init__(self, schema: StateSchema, action_space: Any, samples: Sequence[tuple[Any, Any]] | None = None):
        self.schema = schema
        self.by_name: dict[str, StateField] = {f.name: f for f in schema.fields}
        usable = [f for f in schema.fields if len(f.shape) <= 1]
        self.scalars = [f.name for f in usable if f.shape == ()]
        self.vectors = [f.name for f in usable if len(f.shape) == 1 and f.shape[0] >= 1]
        self.flags = [f.name for f in usable if f.shape == () and f.unit in FLAG_UNITS]
        groups: dict[tuple[tuple[int, ...], str], list[str]] = {}
        for f in usable:  # a flag or a direction is not a position: no distance of it
            if f.unit not in FLAG_UNITS and not (f.unit or "").startswith(UNIT_NORM_UNITS):
                groups.setdefault((f.shape, f.unit), []).append(f.name)
        self.distance_groups = list(groups.values())
        lengths: dict[int, list[str]] = {}
        for name in self.vectors:
            lengths.setdefault(self.by_name[name].shape[0], []).append(name)
        self.vector_lengths = lengths
        self.action = _continuous(action_space)
        # A field whose name relates two things (``fingertip_to_target``, ``car_to_ball_dist``) is
        # already their difference or distance: a distance takes it alone (b null), never paired.
        self.relative = frozenset(f.name for f in usable if "_to_" in f.name)
        self.constant_norms: frozenset[str] = frozenset()
        self.constant_pairs: frozenset[frozenset[str]] = frozenset()
        if samples:
            self._drop_constant(samples)

    def _drop_constant(self, samples: Sequence[tuple[Any, Any]]) -> None:
        """Leave out what is constant on ``samples``: scalar and vector fields that never change
        (targets, gains and conditions on them), distances that never change (``|push_pos -
        cube_pos|`` is a fixed offset; ``|goal_pos|`` a fixed point). Flags stay: a bonus on a flag
        random actions never raise (success) is still the goal."""
        def values(name: str) -> np.ndarray | None:
            try:
                return np.array([np.asarray(state[name], dtype=float) for state, _ in samples])
            except (KeyError, AttributeError, TypeError, ValueError):
                return None

        cache = {n: values(n) for g in self.distance_groups for n in g}
        cache.update({n: values(n) for n in [*self.scalars, *self.vectors] if n not in cache})

        def constant(x: np.ndarray | None) -> bool:
            if x is None or x.size == 0 or not np.all(np.isfinite(x)):
                return False
            return bool(np.all(np.ptp(x, axis=0) <= 1e-9 * max(1.0, float(np.max(np.abs(x))))))

        def norm(x: np.ndarray) -> np.ndarray:
            return np.abs(x) if x.ndim == 1 else np.linalg.norm(x, axis=-1)

        fixed = {n for n, x in cache.items() if constant(x)}
        flags = set(self.flags)
        self.scalars = [n for n in self.scalars if n not in fixed or n in flags]
        self.vectors = [n for n in self.vectors if n not in fixed]
        self.vector_lengths = {k: kept for k, v in self.vector_lengths.items()
                               if (kept := [n for n in v if n not in fixed])}
        norms, pairs = set(), set()
        for group in self.distance_groups:
            for i, a in enumerate(group):
                xa = cache[a]
                if xa is not None and constant(norm(xa)):
                    norms.add(a)
                for b in group[i + 1:]:
                    xb = cache[b]
                    if xa is not None and xb is not None and constant(norm(xa - xb)):
                        pairs.add(frozenset((a, b)))
        self.constant_norms, self.constant_pairs = frozenset(norms), frozenset(pairs)

    def partners(self, a: str, group: Sequence[str]) -> list[str]:
        """The fields ``b`` may name beside ``a`` in a distance: none for a scalar (measured: Gemma
        3 270M paired ``x_position`` with ``torso_height`` for "run forward"), nor for a relative field."""
        if a in self.relative or self.by_name[a].shape == ():
            return []
        return [n for n in group if n != a and n not in self.relative and frozenset((a, n)) not in self.constant_pairs]

    def describe(self, name: str) -> str:
        f = self.by_name[name]
        shape = "scalar" if f.shape == () else f"shape {f.shape}"
        return f"{name!r} ({shape}, unit {f.unit!r})"


def _continuous(action_space: Any) -> bool:
    """Whether an action-magnitude term makes sense: a 1-D Box, or no space given."""
    if action_space is None:
        return True
    import gymnasium as gym

    return isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1


def sketch_fields(schema: StateSchema) -> dict[str, list[str]]:
    """The fields each slot offers: ``scalar``, ``vector``, ``flag`` and the distance groups
    (fields of equal shape and unit) as ``distance_<i>``."""
    slots = _Slots(schema, None)
    out = {"scalar": slots.scalars, "vector": slots.vectors, "flag": slots.flags}
    out.update({f"distance_{i}": group for i, group in enumerate(slots.distance_groups)})
    return out


# -- the JSON schema ------------------------------------------------------------------------------


def _num(minimum: float, maximum: float, default: float | None = None, *, exclusive_min: bool = False,
         description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "number"}
    out["exclusiveMinimum" if exclusive_min else "minimum"] = minimum
    out["maximum"] = maximum
    if default is not None:
        out["default"] = default
    if description:
        out["description"] = description
    return out


def _enum(names: Sequence[str], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "enum": list(names)}
    if description:
        out["description"] = description
    return out


def _axis(length: int) -> dict[str, Any]:
    """An index into a vector of ``length``, as an enum: llama.cpp's grammar from a JSON schema
    ignores an integer's bounds (measured: Gemma 3 270M wrote axis 3..10 of a 3-vector), an enum it keeps."""
    return {"type": "integer", "enum": list(range(length)), "minimum": 0, "maximum": length - 1}


def _obj(kind: str, props: dict[str, Any], required: Sequence[str], description: str) -> dict[str, Any]:
    return {"type": "object", "description": description, "additionalProperties": False,
            "properties": {"kind": {"const": kind}, **props}, "required": ["kind", *required]}


def _transform_schema(gain: bool) -> dict[str, Any]:
    kinds = ["linear", "tanh"] if gain else ["linear", "exp", "tanh"]
    what = ("gain x: linear x/scale, tanh tanh(x/scale)" if gain else
            "cost c >= 0: linear -c/scale, exp exp(-c/scale), tanh 1 - tanh(c/scale)")
    return {"type": "object", "additionalProperties": False, "description": what,
            "properties": {"kind": {"type": "string", "enum": kinds, "default": "linear"},
                           "scale": _num(0, SCALE_BOUND, 1.0, exclusive_min=True,
                                         description="the quantity's typical size, in its unit")},
            "required": []}


def _pairs(slots: _Slots, group: Sequence[str], make: Any,
           excluded: frozenset[TermKey] = frozenset()) -> dict[str, Any] | None:
    """``make(a_and_b_props)`` for each ``a`` of the group, with ``b`` among its partners or null
    (null only when ``|a|`` is not constant): one variant per ``a`` (anyOf), so a grammar cannot pair
    a field with itself or a relative field. ``excluded``: distance term keys left out (either order
    of a pair). None when no ``a`` has anything left."""
    variants = []
    for a in group:
        partners = [b for b in slots.partners(a, group)
                    if ("distance", a, b) not in excluded and ("distance", b, a) not in excluded]
        alone = a not in slots.constant_norms and ("distance", a, None) not in excluded
        if not partners and not alone:
            continue
        null = {"type": "null"}
        b: dict[str, Any] = ({"anyOf": [_enum(partners), null], "default": None} if partners and alone
                             else _enum(partners) if partners else {**null, "default": None})
        variants.append(make({"a": {"type": "string", "const": a}, "b": b}))
    if not variants:
        return None
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def _condition_defs(slots: _Slots) -> dict[str, dict[str, Any]]:
    defs: dict[str, dict[str, Any]] = {}
    for i, group in enumerate(slots.distance_groups):
        pairs = _pairs(slots, group, lambda ab: _obj("distance", {
            **ab, "below": _num(0, SCALE_BOUND, exclusive_min=True)}, ["a", "below"],
            "|a - b| < below (|a| if b is null)"))
        if pairs is not None:
            defs[f"when_distance_{i}"] = pairs
    if slots.scalars:
        defs["when_scalar"] = _obj("scalar", {
            "field": _enum(slots.scalars), "op": {"type": "string", "enum": ["above", "below"]},
            "value": _num(-VALUE_BOUND, VALUE_BOUND)}, ["field", "op", "value"], "field > value or field < value")
    for length, names in slots.vector_lengths.items():
        defs[f"when_axis_{length}"] = _obj("axis", {
            "field": _enum(names), "axis": _axis(length),
            "op": {"type": "string", "enum": ["above", "below"]}, "value": _num(-VALUE_BOUND, VALUE_BOUND)},
            ["field", "axis", "op", "value"], "field[axis] > value or < value")
    if slots.flags:
        defs["when_flag"] = _obj("flag", {"field": _enum(slots.flags)}, ["field"], "field > 0.5")
    return defs


def _term_defs(slots: _Slots, conditions: list[str],
               excluded: frozenset[TermKey] = frozenset()) -> dict[str, dict[str, Any]]:
    def kept(kind: str, names: Sequence[str]) -> list[str]:
        return [n for n in names if (kind, n, None) not in excluded]

    def term(kind: str, props: dict[str, Any], required: Sequence[str], description: str,
             weight_default: float = 1.0) -> dict[str, Any]:
        base = {"name": {"type": "string", "pattern": _NAME_PATTERN, "description": "component name"},
                "weight": _num(-WEIGHT_BOUND, WEIGHT_BOUND, weight_default,
                               description="> 0 pursues the term's objective, < 0 avoids it")}
        return _obj(kind, {**base, **props}, ["name", *required], description)

    when = {"anyOf": [{"$ref": f"#/$defs/{c}"} for c in conditions]}
    defs: dict[str, dict[str, Any]] = {}
    for i, group in enumerate(slots.distance_groups):
        pairs = _pairs(slots, group, lambda ab: term("distance", {
            **ab, "transform": _transform_schema(False)}, ["a"],
            "closeness of a and b (cost |a - b|, or |a| if b is null)"), excluded)
        if pairs is not None:
            defs[f"distance_{i}"] = pairs
    if targets := kept("target", slots.scalars):
        defs["target"] = term("target", {"field": _enum(targets), "target": _num(-VALUE_BOUND, VALUE_BOUND),
                                         "transform": _transform_schema(False)},
                              ["field", "target"], "a scalar driven toward target (cost |field - target|)")
    def objectives(kind: str, names: Sequence[str], make: Any) -> dict[str, Any] | None:
        """``make(field_enum, objective_enum)`` for the fields with both objectives, plus one
        variant per field with one objective excluded; None when nothing is left."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for n in names:
            left = tuple(o for o in _OBJECTIVES if (kind, n, o) not in excluded)
            if left:
                groups.setdefault(left, []).append(n)
        variants = [make(fields, list(left)) for left, fields in groups.items()]
        return None if not variants else variants[0] if len(variants) == 1 else {"anyOf": variants}

    def objective_enum(left: list[str]) -> dict[str, Any]:
        return {"type": "string", "enum": left, "default": left[0]}

    scalar = objectives("scalar", slots.scalars, lambda fields, left: term(
        "scalar", {"field": _enum(fields), "objective": objective_enum(left), "transform": _transform_schema(True)},
        ["field"], "a scalar maximised or minimised"))
    if scalar is not None:
        defs["scalar"] = scalar
    for length, names in slots.vector_lengths.items():
        axis = objectives("axis", names, lambda fields, left, length=length: term(
            "axis", {"field": _enum(fields), "axis": _axis(length),
                     "objective": objective_enum(left), "transform": _transform_schema(True)},
            ["field", "axis"], "one component of a vector maximised or minimised"))
        if axis is not None:
            defs[f"axis_{length}"] = axis
    if flags := kept("flag", slots.flags):
        defs["flag"] = term("flag", {"field": _enum(flags)}, ["field"], "1 while field > 0.5")
    if slots.action:
        defs["action"] = term("action", {"transform": _transform_schema(False)}, [],
                              "action magnitude (cost sum(action**2))")
    if conditions:
        defs["bonus"] = term("bonus", {"when": when}, ["when"], "1 while the condition holds")
    return defs


def sketch_schema(schema: StateSchema, *, action_space: Any = None, every_key: bool = False,
                  scales: bool = True, samples: Sequence[tuple[Any, Any]] | None = None,
                  exclude_kinds: Sequence[str] = (), exclude_terms: Collection[TermKey] = ()) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a reward sketch for this task's StateView.

    Field names are enums, and each slot lists only the fields that fit it: a distance's ``a``
    and ``b`` come from one group of fields of equal shape and unit, ``target``/``scalar`` take
    scalar fields, ``axis`` vector fields (its ``axis`` bounded by their length), ``flag`` scalar
    0/1 or count fields. Every number is bounded. ``action_space``: a task with discrete actions
    gets no ``action`` term. A kind with no fitting field is left out.

    ``every_key``: every key of every object required (``b`` may still be null). For decoding: a
    grammar that lets a small model skip a key lets it skip the one that matters (a distance's
    ``b``, leaving the size of one position). Validation keeps the defaults.
    ``scales=False``: transforms carry no ``scale`` and the sketch no ``gain`` (the workbench sets
    them, :func:`fill_scales`, :func:`fill_gain`).
    ``samples`` (``(state, action)`` pairs): leave out what is constant on them (fields that never
    change, distances that never change); for decoding, where a term of them could only be rejected
    as constant. Validation keeps them.
    ``exclude_kinds``: term kinds not offered (a search exploring other kinds of terms than its
    earlier candidates'); ignored where it would leave no kind. Validation keeps every kind.
    ``exclude_terms``: terms not offered (:func:`term_key`: a field of one kind, or one distance),
    e.g. terms the preference check blamed in an earlier reply; conditions keep them.
    """
    out = _sketch_schema(schema, action_space, samples, exclude_kinds, frozenset(exclude_terms))
    if not scales:
        _drop_scales(out)
        del out["properties"]["gain"]
    if every_key:
        _require_every_key(out)
        out["required"] = [key for key in out["required"] if key != "gain"]  # the workbench's, when absent
    return out


def _drop_scales(node: Any) -> None:
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict) and "scale" in props and "kind" in props:  # a transform
            del props["scale"]
            node["description"] = node.get("description", "") + "; scale: the quantity's typical size on the task"
        for value in node.values():
            _drop_scales(value)
    elif isinstance(node, list):
        for value in node:
            _drop_scales(value)


_COST_KINDS = ("distance", "target", "action")
_GAIN_KINDS = ("scalar", "axis")


def fill_scales(data: Any, samples: Sequence[tuple[Any, Any]]) -> dict[str, float]:
    """Set every transform's missing ``scale`` (in the sketch's JSON, in place) to the typical size
    of its term's quantity on ``samples`` (``(state, action)`` pairs): the median of the cost
    (``|a - b|``, ``|field - target|``, ``sum(action**2)``) or of the gain's magnitude, two
    significant digits. A scale is what a small model cannot judge (``car_to_ball_dist`` is in
    thousands of uu, ``fingertip_to_target`` in tenths of a metre); weights and thresholds stay
    its choice. Terms whose fields are unknown or ill-shaped are left for validation to report.
    Returns ``{"terms[i].transform.scale": value}`` for what was set."""
    filled: dict[str, float] = {}
    if not isinstance(data, dict) or not samples:
        return filled

    def quantity(term: dict[str, Any], state: Any, action: Any) -> float:
        kind = term["kind"]
        if kind == "distance":
            a = np.asarray(state[term["a"]], dtype=float)
            b = term.get("b")
            return float(np.linalg.norm(a - np.asarray(state[b], dtype=float) if b else a))
        if kind == "target":
            return abs(float(state[term["field"]]) - float(term["target"]))
        if kind == "action":
            return float(np.sum(np.square(np.asarray(action, dtype=float))))
        if kind == "axis":
            return abs(float(np.asarray(state[term["field"]], dtype=float)[int(term["axis"])]))
        return abs(float(state[term["field"]]))  # scalar

    for where, term in _json_terms(data.get("terms")):
        if term.get("kind") not in _COST_KINDS + _GAIN_KINDS:
            continue
        transform = term.setdefault("transform", {})
        if not isinstance(transform, dict) or "scale" in transform:
            continue
        try:
            values = np.array([quantity(term, state, action) for state, action in samples])
        except (KeyError, AttributeError, IndexError, TypeError, ValueError):
            term["transform"] = transform or {}
            continue
        finite = values[np.isfinite(values)]
        typical = float(np.median(finite)) if finite.size else 0.0
        if typical <= 1e-9:
            typical = float(np.max(finite)) if finite.size and np.max(finite) > 1e-9 else 1.0
        scale = float(f"{min(typical, SCALE_BOUND):.2g}")
        transform["scale"] = scale
        filled[f"{where}.transform.scale"] = scale
    return filled


def fill_gain(data: Any, gamma: float) -> dict[str, float]:
    """Set the sketch's missing ``gain`` (in its JSON, in place) to ``1 - gamma`` of the learner
    that will train on it, so that a term of about 1 per step (:func:`fill_scales`) sums over the
    discounted horizon to about its weight, as a return-normalised reward would; tasks whose learner
    normalises rewards (``normalize: true``) are unaffected. Why: PPO clips the gradient norm of
    its policy and value losses together, so returns in the hundreds leave the policy steps tiny.
    Measured (2-core CPU, PPO at each task's budget, 50 episodes; README "The gain, measured") on
    the embedded model's one-term distance sketches, gain 1 vs 1 - gamma: Rocket League TouchBall
    0.00 vs 0.86, Crafter CollectWood 0.98 vs 1.00, but PlanarPush 0.22 and 0.26 vs 0.00 and 0.00
    (seeds 0, 1; its sketch lacks a reach term, and the smaller reward ends exploration sooner).
    Returns ``{"gain": value}`` when set."""
    if not isinstance(data, dict) or "gain" in data:
        return {}
    gain = float(f"{min(1.0, max(1.0 - float(gamma), 1e-3)):.2g}")
    data["gain"] = gain
    return {"gain": gain}


def _json_terms(terms: Any, prefix: str = "terms") -> Iterator[tuple[str, dict[str, Any]]]:
    """``("terms[2].terms[0]", term)`` for every term object in a sketch's JSON (not validated yet),
    stages' inner terms after their stage."""
    if not isinstance(terms, list):
        return
    for i, term in enumerate(terms):
        if isinstance(term, dict):
            yield f"{prefix}[{i}]", term
            if term.get("kind") == "stage":
                yield from _json_terms(term.get("terms"), f"{prefix}[{i}].terms")


def named_fields(data: Any) -> list[str]:
    """The StateView fields a sketch's JSON names (every ``a``, ``b`` and ``field``, conditions
    included), in order of first appearance."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("a", "b", "field") and isinstance(value, str) and value not in found:
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return found


def fill_thresholds(data: Any, samples: Sequence[tuple[Any, Any]]) -> dict[str, float]:
    """Set every distance condition's ``below`` that is not a usable threshold (missing, 0 or
    negative: never true; above the bound) to the :data:`THRESHOLD_QUANTILE` quantile of its
    distance on ``samples``, two significant digits, in the sketch's JSON, in place. The embedded
    models write ``below: 0`` for "at the target" more often than anything else that validation
    rejects; this reads it as "closer than usual". A valid threshold stays the model's choice.
    Returns ``{"terms[i].when.below": value}`` for what was set."""
    filled: dict[str, float] = {}
    if not isinstance(data, dict) or not samples:
        return filled
    for where, term in _json_terms(data.get("terms")):
        cond = term.get("when")
        if not isinstance(cond, dict):
            continue
        where = f"{where}.when"
        below = cond.get("below")
        usable = isinstance(below, (int, float)) and not isinstance(below, bool) and 0 < below <= SCALE_BOUND
        if cond.get("kind") != "distance" or usable or not isinstance(cond.get("a"), str):
            continue
        try:
            values = np.array([np.linalg.norm(np.asarray(state[cond["a"]], dtype=float)
                                              - (np.asarray(state[cond["b"]], dtype=float) if cond.get("b") else 0.0))
                               for state, _ in samples])
        except (KeyError, AttributeError, IndexError, TypeError, ValueError):
            continue  # unknown or ill-shaped fields: validation reports them
        finite = values[np.isfinite(values)]
        near = float(np.quantile(finite, THRESHOLD_QUANTILE)) if finite.size else 0.0
        if near <= 1e-9:
            near = float(np.max(finite)) / 2 if finite.size and np.max(finite) > 1e-9 else 1.0
        cond["below"] = float(f"{min(near, SCALE_BOUND):.2g}")
        filled[f"{where}.below"] = cond["below"]
    return filled


def unique_names(data: Any) -> dict[str, str]:
    """Rename repeated component names (``dist``, ``dist`` -> ``dist``, ``dist_2``) in the sketch's
    JSON, in place: a name is a label for TensorBoard, and a small model repeats one more often
    than it means anything by it. Returns ``{"terms[i].name": new name}``."""
    renamed: dict[str, str] = {}
    if not isinstance(data, dict):
        return renamed
    terms = list(_json_terms(data.get("terms")))
    taken = {t["name"] for _, t in terms if isinstance(t.get("name"), str)}
    seen: set[str] = set()
    for where, term in terms:
        name = term.get("name")
        if not isinstance(name, str):
            continue
        if name in seen:
            n = 2
            while f"{name[:28]}_{n}" in taken:
                n += 1
            term["name"] = f"{name[:28]}_{n}"
            taken.add(term["name"])
            renamed[f"{where}.name"] = term["name"]
        seen.add(term["name"])
    return renamed


def settle_action_costs(data: Any) -> dict[str, Any]:
    """Make every action cost's weight positive, and keep only the first top-level action cost, in
    the sketch's JSON, in place. An ``action`` term is a cost already: a negative weight would pay
    for effort, and the embedded model writes ``"weight": -0.02`` for "a small effort cost"; it also
    repeats the example's effort term (six action costs in one HalfCheetah reply, Gemma 3 270M),
    which multiplies the cost by chance. Returns ``{"terms[i].weight": new weight}`` and
    ``{"terms[i]": "dropped: ..."}`` (indices as in the reply)."""
    settled: dict[str, Any] = {}
    if not isinstance(data, dict):
        return settled
    for where, term in _json_terms(data.get("terms")):
        weight = term.get("weight")
        if term.get("kind") == "action" and isinstance(weight, (int, float)) and weight < 0:
            term["weight"] = -weight
            settled[f"{where}.weight"] = -weight
    terms = data.get("terms")
    if isinstance(terms, list):
        actions = [i for i, t in enumerate(terms) if isinstance(t, dict) and t.get("kind") == "action"]
        for i in actions[1:]:
            settled[f"terms[{i}]"] = f"dropped: a repeated action cost (terms[{actions[0]}] is kept)"
        data["terms"] = [t for i, t in enumerate(terms) if i not in actions[1:]]
    return settled


def _require_every_key(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            node["required"] = list(node["properties"])
        for value in node.values():
            _require_every_key(value)
    elif isinstance(node, list):
        for value in node:
            _require_every_key(value)


def _kinds(definition: dict[str, Any]) -> set[str]:
    """The term kinds a schema definition admits (its own ``kind`` const, or its variants')."""
    const = definition.get("properties", {}).get("kind", {}).get("const")
    return {const} if const else {k for variant in definition.get("anyOf", []) for k in _kinds(variant)}


def _sketch_schema(schema: StateSchema, action_space: Any,
                   samples: Sequence[tuple[Any, Any]] | None = None,
                   exclude_kinds: Sequence[str] = (),
                   exclude_terms: frozenset[TermKey] = frozenset()) -> dict[str, Any]:
    slots = _Slots(schema, action_space, samples)
    condition_defs = _condition_defs(slots)
    term_defs = _term_defs(slots, list(condition_defs), exclude_terms)
    term_defs = {name: d for name, d in term_defs.items() if not _kinds(d) <= set(exclude_kinds)} or term_defs
    inner = [{"$ref": f"#/$defs/{name}"} for name in term_defs]
    defs = {**condition_defs, **term_defs}
    outer = list(inner)
    if condition_defs:
        defs["stage"] = {
            "type": "object", "additionalProperties": False,
            "description": "inner terms that count only while the condition holds; weight is paid while it holds",
            "properties": {"kind": {"const": "stage"},
                           "name": {"type": "string", "pattern": _NAME_PATTERN},
                           "weight": _num(-WEIGHT_BOUND, WEIGHT_BOUND, 0.0),
                           "when": {"anyOf": [{"$ref": f"#/$defs/{c}"} for c in condition_defs]},
                           "terms": {"type": "array", "items": {"anyOf": inner}, "minItems": 1,
                                     "maxItems": MAX_STAGE_TERMS}},
            "required": ["kind", "name", "when", "terms"]}
        outer.append({"$ref": "#/$defs/stage"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"reward sketch for {schema.task}",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": _NAME_PATTERN},
            "goal": {"type": "string", "maxLength": _MAX_GOAL},
            "terms": {"type": "array", "items": {"anyOf": outer}, "minItems": 1, "maxItems": MAX_TERMS},
            "gain": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                     "description": "every component times this (the workbench sets it: fill_gain)"},
        },
        "required": ["terms"],
        "$defs": defs,
    }


# -- validation -----------------------------------------------------------------------------------


def _loc(loc: Sequence[Any]) -> str:
    """``('terms', 1, 'distance', 'b')`` -> ``terms[1].b`` (the union's tag left out)."""
    out = ""
    previous: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(previous, int) and part in _KINDS:
            pass  # pydantic's discriminator tag
        else:
            out += f".{part}" if out else str(part)
        previous = part
    return out or "<sketch>"


_KINDS = frozenset({"distance", "target", "scalar", "axis", "flag", "action", "bonus", "stage"})


def _pydantic_problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        where = _loc(e["loc"])
        problems.append(f"{where}: {e['msg']}")
    return problems


class _TaskCheck:
    """Explicit checks of a parsed sketch against the task's fields, with messages that name the
    term and the key."""

    def __init__(self, slots: _Slots):
        self.slots = slots
        self.problems: list[str] = []

    def fail(self, where: str, key: str, kind: str, message: str) -> None:
        self.problems.append(f"{where} ({kind}) key {key!r}: {message}")

    def known(self, where: str, key: str, kind: str, name: str) -> bool:
        if name in self.slots.by_name:
            return True
        close = difflib.get_close_matches(name, list(self.slots.by_name), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        self.fail(where, key, kind, f"unknown field {name!r} for task {self.slots.schema.task}{hint}; "
                                    f"fields are: {', '.join(self.slots.by_name)}")
        return False

    def shaped(self, where: str, key: str, kind: str, name: str, allowed: Sequence[str], need: str) -> bool:
        if not self.known(where, key, kind, name):
            return False
        if name not in allowed:
            listing = ", ".join(allowed) if allowed else "none in this task"
            self.fail(where, key, kind, f"{self.slots.describe(name)} does not fit: {need}; fitting fields: {listing}")
            return False
        return True

    def pair(self, where: str, kind: str, a: str, b: str | None) -> None:
        usable = [n for g in self.slots.distance_groups for n in g]
        need = ("a distance needs a scalar or 1-D vector field that is not a 0/1 or count flag (use a flag term) "
                "nor a direction or orientation (its size never changes)")
        if not self.shaped(where, "a", kind, a, usable, need):
            return
        if b is None:
            return
        if not self.shaped(where, "b", kind, b, usable, need):
            return
        fa, fb = self.slots.by_name[a], self.slots.by_name[b]
        if a == b:
            self.fail(where, "b", kind, f"{b!r} is also 'a': the distance would always be 0")
        elif fa.shape == () or fb.shape == ():
            scalar = a if fa.shape == () else b
            self.fail(where, "b", kind, f"{self.slots.describe(scalar)} is a scalar: a distance pairs only two "
                                        "vector fields (positions); use a scalar alone with b null, or a "
                                        "'target' term to drive it toward a value")
        elif a in self.slots.relative or b in self.slots.relative:
            rel = a if a in self.slots.relative else b
            self.fail(where, "b", kind, f"{rel!r} is already a difference or distance (its name relates two "
                                        "things): use it alone as 'a' with b null")
        elif (fa.shape, fa.unit) != (fb.shape, fb.unit):
            group = next(g for g in self.slots.distance_groups if a in g)
            others = [n for n in group if n != a]
            self.fail(where, "b", kind, f"{self.slots.describe(b)} does not match 'a' {self.slots.describe(a)}: "
                                        "a distance needs two fields of equal shape and unit; fields that fit: "
                                        f"{', '.join(others) if others else 'none (use b: null for |a|)'}")

    def axis(self, where: str, kind: str, field: str, axis: int) -> None:
        if self.shaped(where, "field", kind, field, self.slots.vectors, "an axis needs a 1-D vector field"):
            length = self.slots.by_name[field].shape[0]
            if axis >= length:
                self.fail(where, "axis", kind, f"axis {axis} is out of range for {self.slots.describe(field)}: "
                                               f"0..{length - 1}")

    def condition(self, where: str, cond: Any) -> None:
        where = f"{where}.when"
        if isinstance(cond, DistanceCondition):
            self.pair(where, "distance", cond.a, cond.b)
        elif isinstance(cond, ScalarCondition):
            self.shaped(where, "field", "scalar", cond.field, self.slots.scalars, "a scalar condition needs a "
                        "scalar field")
        elif isinstance(cond, AxisCondition):
            self.axis(where, "axis", cond.field, cond.axis)
        else:
            self.shaped(where, "field", "flag", cond.field, self.slots.flags,
                        f"a flag needs a scalar field with unit {' or '.join(sorted(FLAG_UNITS))}")

    def term(self, where: str, term: Any) -> None:
        kind = term.kind
        if isinstance(term, DistanceTerm):
            self.pair(where, kind, term.a, term.b)
        elif isinstance(term, (TargetTerm, ScalarTerm)):
            self.shaped(where, "field", kind, term.field, self.slots.scalars, f"a {kind} term needs a scalar field "
                        "(for one component of a vector use kind 'axis')")
        elif isinstance(term, AxisTerm):
            self.axis(where, kind, term.field, term.axis)
        elif isinstance(term, FlagTerm):
            self.shaped(where, "field", kind, term.field, self.slots.flags,
                        f"a flag needs a scalar field with unit {' or '.join(sorted(FLAG_UNITS))}")
        elif isinstance(term, ActionTerm):
            if not self.slots.action:
                self.fail(where, "kind", kind, "this task's actions are discrete: an action-magnitude cost "
                                               "means nothing there")
        elif isinstance(term, (BonusTerm, StageTerm)):
            self.condition(where, term.when)


def _jsonschema_problems(data: Any, schema: dict[str, Any]) -> list[str] | None:
    """Problems the JSON schema finds (None when the ``jsonschema`` package is not installed)."""
    try:
        import jsonschema
    except ImportError:
        return None
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        best = jsonschema.exceptions.best_match([error])
        where = _loc(list(best.absolute_path))
        problems.append(f"{where}: {best.message} (JSON schema)")
    return problems


def validate_sketch(data: Any, schema: StateSchema, *, action_space: Any = None) -> Sketch:
    """Parse and check a sketch (a dict, its JSON text, or a :class:`Sketch`) against a task's
    StateView before any code is made; raises :class:`SketchInvalid` naming the term and key.

    Three layers: the vocabulary (pydantic, strict, no extra keys), the task (every field known
    and of a fitting shape and unit, axes in range, no action term for discrete actions), and,
    when the ``jsonschema`` package is installed, the generated JSON schema itself.
    """
    task = schema.task
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as err:
            raise SketchInvalid([f"not JSON: {err}"], task=task) from None
    if isinstance(data, Sketch):
        sketch = data
        data = sketch.model_dump(mode="json", exclude_none=True)  # the schema leaves unset keys out
    else:
        try:
            sketch = Sketch.model_validate(data)
        except ValidationError as err:
            problems = _pydantic_problems(err)
            raise SketchInvalid(problems, task=task, location=problems[0].split(":")[0]) from None
    slots = _Slots(schema, action_space)
    check = _TaskCheck(slots)
    for where, term in _walk(sketch.terms):
        check.term(where, term)
    if check.problems:
        raise SketchInvalid(check.problems, task=task, location=check.problems[0].split(" ")[0])
    json_problems = _jsonschema_problems(data, sketch_schema(schema, action_space=action_space))
    if json_problems:
        raise SketchInvalid(json_problems, task=task, location=json_problems[0].split(":")[0])
    return sketch


# -- the compiler ---------------------------------------------------------------------------------


def _f(x: float) -> str:
    """A float literal that reads back exactly."""
    value = float(x)
    assert math.isfinite(value)
    return repr(value)


def _comment(text: str, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


class _Emitter:
    def __init__(self, slots: _Slots):
        self.slots = slots
        self.lines: list[str] = []
        self.components: list[str] = []

    def emit(self, line: str, depth: int = 1) -> None:
        self.lines.append("    " * depth + line)

    def unit(self, name: str) -> str:
        return self.slots.by_name[name].unit

    def magnitude(self, a: str, b: str | None) -> tuple[str, str]:
        """(expression [N], words) for |a - b| or |a|."""
        diff = f"state.{a} - state.{b}" if b else f"state.{a}"
        words = f"|{a} - {b}|" if b else f"|{a}|"
        if self.slots.by_name[a].shape == ():
            return f"np.abs({diff})", words
        return f"np.linalg.norm({diff}, axis=-1)", words

    @staticmethod
    def cost(c: str, t: Transform) -> tuple[str, str]:
        s = _f(t.scale)
        if t.kind == "linear":
            return f"-({c} / {s})", f"linear: -c / {s}"
        if t.kind == "exp":
            return f"np.exp(-({c} / {s}))", f"exp kernel: exp(-c / {s})"
        return f"1.0 - np.tanh({c} / {s})", f"tanh: 1 - tanh(c / {s})"

    @staticmethod
    def gain(x: str, objective: str, t: GainTransform) -> tuple[str, str]:
        s = _f(t.scale)
        x = x if objective == "maximize" else f"-{x}"
        if t.kind == "linear":
            return f"{x} / {s}", f"{objective}, linear: x / {s}"
        return f"np.tanh({x} / {s})", f"{objective}, tanh: tanh(x / {s})"

    def condition(self, cond: Any) -> tuple[str, str]:
        """(boolean expression [N], words)."""
        if isinstance(cond, DistanceCondition):
            expr, words = self.magnitude(cond.a, cond.b)
            return f"{expr} < {_f(cond.below)}", f"{words} < {_f(cond.below)} {self.unit(cond.a)}"
        if isinstance(cond, ScalarCondition):
            op = ">" if cond.op == "above" else "<"
            return f"state.{cond.field} {op} {_f(cond.value)}", f"{cond.field} {op} {_f(cond.value)}"
        if isinstance(cond, AxisCondition):
            op = ">" if cond.op == "above" else "<"
            return (f"state.{cond.field}[:, {cond.axis}] {op} {_f(cond.value)}",
                    f"{cond.field}[{cond.axis}] {op} {_f(cond.value)}")
        return f"state.{cond.field} > 0.5", f"{cond.field} is set (> 0.5)"

    def term(self, where: str, term: Any, mask: str | None = None, depth: int = 1) -> None:
        """Emit one term's component ``r_<name>`` (times ``mask`` inside a stage)."""
        var, w = f"r_{term.name}", _f(term.weight)
        gate = f"{mask} * " if mask else ""
        if isinstance(term, StageTerm):
            cond, words = self.condition(term.when)
            when = f"when_{term.name}"
            bonus = f"weight {w} is paid while it holds" if term.weight != 0.0 else "no entry bonus (weight 0)"
            self.emit(f"# {where} {term.name!r} (stage): the {len(term.terms)} term(s) below count only while "
                      f"{words}; {bonus}", depth)
            self.emit(f"{when} = np.where({cond}, 1.0, 0.0)", depth)
            if term.weight != 0.0:
                self.emit(f"{var} = {w} * {when}", depth)
                self.components.append(term.name)
            for i, inner in enumerate(term.terms):
                self.term(f"{where}.terms[{i}]", inner, mask=when, depth=depth)
            return
        if isinstance(term, DistanceTerm):
            c, words = self.magnitude(term.a, term.b)
            value, how = self.cost(f"d_{term.name}", term.transform)
            self.emit(f"# {where} {term.name!r} (distance): closeness, c = {words} [{self.unit(term.a)}], "
                      f"{how}; weight {w}", depth)
            self.emit(f"d_{term.name} = {c}", depth)
        elif isinstance(term, TargetTerm):
            value, how = self.cost(f"d_{term.name}", term.transform)
            self.emit(f"# {where} {term.name!r} (target): {term.field} toward {_f(term.target)} "
                      f"[{self.unit(term.field)}], c = |{term.field} - {_f(term.target)}|, {how}; weight {w}", depth)
            self.emit(f"d_{term.name} = np.abs(state.{term.field} - {_f(term.target)})", depth)
        elif isinstance(term, ScalarTerm):
            value, how = self.gain(f"state.{term.field}", term.objective, term.transform)
            self.emit(f"# {where} {term.name!r} (scalar): x = {term.field} [{self.unit(term.field)}], {how}; "
                      f"weight {w}", depth)
        elif isinstance(term, AxisTerm):
            value, how = self.gain(f"state.{term.field}[:, {term.axis}]", term.objective, term.transform)
            self.emit(f"# {where} {term.name!r} (axis): x = {term.field}[{term.axis}] [{self.unit(term.field)}], "
                      f"{how}; weight {w}", depth)
        elif isinstance(term, FlagTerm):
            value = f"np.where(state.{term.field} > 0.5, 1.0, 0.0)"
            self.emit(f"# {where} {term.name!r} (flag): 1 while {term.field} > 0.5, else 0; weight {w}", depth)
        elif isinstance(term, ActionTerm):
            value, how = self.cost(f"d_{term.name}", term.transform)
            self.emit(f"# {where} {term.name!r} (action): c = sum(action**2), {how}; weight {w}", depth)
            self.emit(f"d_{term.name} = np.sum(np.square(action), axis=-1)", depth)
        else:
            assert isinstance(term, BonusTerm)
            cond, words = self.condition(term.when)
            value = f"np.where({cond}, 1.0, 0.0)"
            self.emit(f"# {where} {term.name!r} (bonus): 1 while {words}, else 0; weight {w}", depth)
        self.emit(f"{var} = {gate}{w} * ({value})", depth)
        self.components.append(term.name)


def compile_sketch(sketch: Sketch | Mapping[str, Any] | str, schema: StateSchema, *,
                   action_space: Any = None, form: Literal["reward", "encoder"] = "reward") -> str:
    """The source of a batched reward program (``compute_reward_batch``) equal to the sketch.

    The sketch is validated against the task first (:func:`validate_sketch`). The program reads
    only the fields the sketch names, reduces every env's row on its own (``axis=-1``), and
    returns the total ``[N]`` and one component ``[N]`` per term (a stage: its inner terms, and
    its entry bonus when its weight is not 0). Comments say which part of the sketch each line
    came from. Run it through the sandbox and ``checks.preflight`` like any program.

    ``form="encoder"``: the same terms as a LaRe encoder, ``encode_factors(state, action)`` on one
    state, returning ``{component name: float}``: each term one latent factor, which LaRe's decoder
    weighs itself (the sketch's weights only scale the inputs it normalises; its ``gain`` does not apply).
    """
    parsed = validate_sketch(sketch, schema, action_space=action_space)
    emitter = _Emitter(_Slots(schema, action_space))
    for where, term in ((f"terms[{i}]", t) for i, t in enumerate(parsed.terms)):
        emitter.term(where, term)
    title = parsed.name or "(unnamed)"
    what = "LaRe encoder" if form == "encoder" else "Reward program"
    header = [
        f"# {what} compiled from the reward sketch {title!r} for {_comment(schema.task, 80)}",
        "# by reward_synthesis.language.sketches.compile_sketch. Edit the sketch and compile again, or edit",
        "# this program like any other (it is checked the same way).",
    ]
    if parsed.goal:
        header.append(f"# Goal: {_comment(parsed.goal)}")
    names = emitter.components
    body = list(emitter.lines)
    if form == "encoder":
        header += [
            "# One state: every field is one row; each term is one latent factor (weight * goodness).",
            "import numpy as np",
            "",
            "",
            "def encode_factors(state, action):",
        ]
        body.append("    return {")
        body += [f"        {name!r}: float(r_{name})," for name in names]
        body.append("    }")
        return "\n".join(header + body) + "\n"
    header += [
        "# Batched form: every state field is [N, ...] (one row per env), action is [N, ...]; each row is",
        "# reduced on its own (axis=-1). Each term is weight * goodness (times the sketch's gain, if any);",
        "# the total is their sum.",
        "import numpy as np",
        "",
        "",
        "def compute_reward_batch(state, action):",
    ]
    gain = "" if parsed.gain is None or parsed.gain == 1.0 else f"{_f(parsed.gain)} * "
    if gain:
        body.append(f"    # the sketch's gain: every component times {_f(parsed.gain)}")
    body.append("    components = {")
    body += [f"        {name!r}: {gain}r_{name}," for name in names]
    body.append("    }")
    body.append(f"    total = {' + '.join(f'{gain}r_{n}' for n in names)}")  # the components' sum, exactly
    body.append("    return total, components")
    return "\n".join(header + body) + "\n"
