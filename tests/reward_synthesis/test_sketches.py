"""Reward sketches: the vocabulary, the per-task JSON schema, validation, and the compiled programs.

Hand-written sketches for four simulators' tasks (MuJoCo Reacher and PlanarPush, Crafter
CollectWood, Rocket League TouchBall) validate, compile, pass the whole pre-flight (batch
consistency and the reference-policy preference included) on states from the real simulators,
and their batched programs equal each sample alone. Every term kind and transform is checked
numerically against a hand computation on a toy StateView.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import pytest
from workbench_testing import REPO

from reward_synthesis.language.sketches import (
    FLAG_UNITS,
    Sketch,
    SketchInvalid,
    compile_sketch,
    fill_gain,
    fill_scales,
    fill_thresholds,
    sketch_fields,
    sketch_schema,
    unique_names,
    validate_sketch,
)
from reward_synthesis.program import CodeRewardProgram
from reward_synthesis.safety.checks import check_inputs, preflight
from reward_synthesis.safety.sandbox import load_program, state_inputs
from workbench.registry import SIMS
from workbench.reward import call_single, is_batched
from workbench.spec import load_task
from workbench.state import Field, State, StateSchema

TOL = 1e-9
REACHER_SKETCH = REPO / "tasks/mujoco/rewards/reacher_sketch.json"

# -- hand-written sketches, one per task ----------------------------------------------------------

PLANAR_PUSH = {
    "name": "push_puck", "goal": "Push the puck onto the goal marker.",
    "terms": [
        {"kind": "distance", "name": "reach", "a": "fingertip_pos", "b": "puck_pos",
         "transform": {"kind": "tanh", "scale": 0.1}, "weight": 0.2},
        {"kind": "distance", "name": "push", "a": "puck_pos", "b": "goal_pos",
         "transform": {"kind": "linear", "scale": 0.1}, "weight": 1.0},
        {"kind": "target", "name": "on_goal", "field": "puck_to_goal_distance", "target": 0.0,
         "transform": {"kind": "exp", "scale": 0.02}, "weight": 0.5},
        {"kind": "action", "name": "control", "transform": {"kind": "linear", "scale": 1.0}, "weight": 0.01},
        {"kind": "bonus", "name": "success", "weight": 1.0,
         "when": {"kind": "scalar", "field": "puck_to_goal_distance", "op": "below", "value": 0.02}},
    ],
}

COLLECT_WOOD = {
    "name": "collect_wood", "goal": "Find a tree and collect one piece of wood from it.",
    "terms": [
        {"kind": "flag", "name": "collected", "field": "inv_wood_delta", "weight": 1.0},
        {"kind": "scalar", "name": "approach", "field": "nearest_tree_approach", "objective": "maximize",
         "transform": {"kind": "tanh", "scale": 1.0}, "weight": 0.1},
        {"kind": "distance", "name": "tree_dist", "a": "nearest_tree_dist",
         "transform": {"kind": "linear", "scale": 10.0}, "weight": 0.05},
        {"kind": "stage", "name": "at_tree", "weight": 0.0, "when": {"kind": "flag", "field": "facing_tree"},
         "terms": [{"kind": "flag", "name": "wood_at_tree", "field": "inv_wood_delta", "weight": 0.5}]},
        {"kind": "bonus", "name": "death", "weight": -1.0,
         "when": {"kind": "scalar", "field": "health", "op": "below", "value": 0.01}},
    ],
}

TOUCH_BALL = {
    "name": "touch_ball", "goal": "Drive the car into the ball and touch it as soon as possible.",
    "terms": [
        {"kind": "scalar", "name": "approach", "field": "car_vel_toward_ball",
         "transform": {"kind": "linear", "scale": 2300.0}, "weight": 1.0},
        {"kind": "scalar", "name": "facing", "field": "facing_ball", "weight": 0.05},
        {"kind": "flag", "name": "touch", "field": "ball_touched", "weight": 10.0},
        {"kind": "axis", "name": "upright", "field": "car_up", "axis": 2, "objective": "maximize",
         "transform": {"kind": "tanh", "scale": 1.0}, "weight": 0.01},
    ],
}

TASKS = {
    "reacher": ("tasks/mujoco/reacher.yaml", json.loads(REACHER_SKETCH.read_text())),
    "planar_push": ("tasks/mujoco/planar_push.yaml", PLANAR_PUSH),
    "collect_wood": ("tasks/minecraft/collect_wood.yaml", COLLECT_WOOD),
    "touch_ball": ("tasks/rocket_league/touch_ball.yaml", TOUCH_BALL),
}
_NEEDS = {"collect_wood": ("crafter", "the crafter extra"), "touch_ball": ("rlgym", "the rocket_league extra")}


class Live:
    def __init__(self, env: Any, profile: Any, samples: list, preference: Any):
        self.env, self.profile, self.samples, self.preference = env, profile, samples, preference
        self.schema: StateSchema = profile.schema
        self.space = env.action_space


_LIVE: dict[str, Live] = {}


def live(task: str) -> Live:
    """The task's env, profile, 64 random-action samples and the preference episodes (built once)."""
    if task in _NEEDS:
        pytest.importorskip(_NEEDS[task][0], reason=f"{task} needs {_NEEDS[task][1]}")
    if task not in _LIVE:
        spec = load_task(REPO / TASKS[task][0])
        adapter = SIMS.get(spec.sim.name)()
        env = adapter.make_env(spec.sim)
        profile = adapter.profile(spec.sim, env)
        samples, preference = check_inputs(env, profile, n=64)
        _LIVE[task] = Live(env, profile, samples, preference)
    return _LIVE[task]


def stack(samples: list) -> tuple[State, np.ndarray]:
    names = list(samples[0][0].keys())
    return (State({n: np.stack([s[n] for s, _ in samples]) for n in names}),
            np.stack([np.asarray(a, dtype=np.float64) for _, a in samples]))


# -- the hand-written sketches on the real tasks ----------------------------------------------------


@pytest.mark.parametrize("task", list(TASKS))
def test_hand_sketch_compiles_and_passes_the_whole_preflight(task: str) -> None:
    t = live(task)
    sketch = validate_sketch(TASKS[task][1], t.schema, action_space=t.space)
    source = compile_sketch(sketch, t.schema, action_space=t.space)
    assert t.preference is not None, "every task here ships a reference policy"
    report = preflight(source, t.samples, program=f"{task}_sketch.py", preference=t.preference)
    assert report.accepted, report.render()
    by_name = {r.name: r for r in report.results}
    assert "equals each sample alone" in by_name["batch_consistency"].detail
    assert "reference policy" in by_name["preference"].detail
    # The program reads exactly the fields the sketch names: the wrappers copy only those.
    named = {v for _, v in _field_refs(TASKS[task][1])}
    assert state_inputs(source) == frozenset(named)


@pytest.mark.parametrize("task", list(TASKS))
def test_compiled_batch_equals_each_sample_alone(task: str) -> None:
    t = live(task)
    fn = load_program(compile_sketch(TASKS[task][1], t.schema, action_space=t.space), batched=True)
    state, actions = stack(t.samples)
    totals, components = fn(state, actions)
    assert totals.shape == (len(t.samples),) and np.std(totals) > 0
    for i in range(len(t.samples)):
        one = State({n: v[i:i + 1] for n, v in state.items()})
        total_i, comps_i = fn(one, actions[i:i + 1])
        assert abs(float(total_i[0]) - float(totals[i])) <= TOL * max(1.0, abs(float(total_i[0])))
        for name, values in components.items():
            assert abs(float(comps_i[name][0]) - float(values[i])) <= TOL * max(1.0, abs(float(values[i])))
    # The total is the sum of the components.
    np.testing.assert_allclose(totals, sum(components.values()), rtol=0, atol=1e-12)


def test_compiled_program_runs_as_a_guarded_code_program_on_one_env() -> None:
    """The path a task takes: CodeRewardProgram (run-time guard), called for one env (N = 1)."""
    t = live("planar_push")
    program = CodeRewardProgram(compile_sketch(PLANAR_PUSH, t.schema, action_space=t.space), name="sketch")
    assert is_batched(program)
    assert program.inputs == frozenset({"fingertip_pos", "puck_pos", "goal_pos", "puck_to_goal_distance"})
    state, action = t.samples[5]
    total, components = call_single(program, state, action, state)
    puck_goal = float(np.linalg.norm(state.puck_pos - state.goal_pos))
    assert components["push"] == pytest.approx(-puck_goal / 0.1, abs=1e-12)
    assert components["control"] == pytest.approx(-0.01 * float(np.sum(np.square(action))), abs=1e-12)
    assert total == pytest.approx(sum(components.values()), abs=1e-12)


def test_the_encoder_form_gives_each_term_as_one_latent_factor_equal_to_the_program_components() -> None:
    """compile_sketch(form="encoder") is a LaRe encoder (encode_factors on one state) whose factors
    are the batched program's components, state by state, and which LaRe's verifier accepts."""
    from reward_synthesis.episodic.lare import LatentEncoder, verify_encoder

    t = live("reacher")
    sketch = {"terms": [
        {"kind": "distance", "name": "reach", "a": "fingertip_pos", "b": "target_pos",
         "transform": {"kind": "exp", "scale": 0.1}, "weight": 1.0},
        {"kind": "distance", "name": "spin", "a": "joint_velocities", "transform": {"kind": "tanh", "scale": 5.0},
         "weight": 0.1},
        {"kind": "action", "name": "control", "transform": {"kind": "linear", "scale": 1.0}, "weight": 0.1}]}
    encoder_source = compile_sketch(sketch, t.schema, action_space=t.space, form="encoder")
    assert "def encode_factors(state, action):" in encoder_source and "compute_reward" not in encoder_source
    report, names = verify_encoder(encoder_source, t.samples, filename="reacher_encoder.py")
    assert report.accepted and names == ["reach", "spin", "control"], report.render()
    program = CodeRewardProgram(compile_sketch(sketch, t.schema, action_space=t.space), name="sketch")
    encoder = LatentEncoder([("reacher_encoder.py", encoder_source)], [names])
    for state, action in t.samples[:16]:
        _, components = call_single(program, state, action, state)
        assert names == list(components)
        np.testing.assert_allclose(encoder(state, action), [components[n] for n in names], rtol=1e-6, atol=1e-9)


def test_wrong_sign_term_fails_the_preference_check_on_reacher() -> None:
    t = live("reacher")
    wrong = {"name": "wrong_sign", "terms": [
        # rewards being far from the target: the exp kernel's closeness, avoided (negative weight)
        {"kind": "distance", "name": "distance", "a": "fingertip_pos", "b": "target_pos",
         "transform": {"kind": "exp", "scale": 0.1}, "weight": -1.0},
        {"kind": "action", "name": "control", "weight": 0.1}]}
    source = compile_sketch(wrong, t.schema, action_space=t.space)
    report = preflight(source, t.samples, preference=t.preference)
    assert not report.accepted
    failed = [r for r in report.results if not r.passed and not r.skipped]
    assert [r.name for r in failed] == ["preference"], report.render()
    assert "prefers random actions" in failed[0].detail
    # The check names the term to blame: the distance, not the action cost.
    assert failed[0].blamed == ("distance",) and "'distance' (" in failed[0].detail
    # The same sketch with the sign the right way round passes.
    right = copy.deepcopy(wrong)
    right["terms"][0]["weight"] = 1.0
    fixed = preflight(compile_sketch(right, t.schema, action_space=t.space), t.samples, preference=t.preference)
    assert fixed.accepted, fixed.render()


# -- the JSON schema --------------------------------------------------------------------------------


def _enums(node: Any) -> set[str]:
    """Every string of every ``enum`` in a JSON schema, and each distance variant's ``a`` const (the
    field names; the other enums are transform kinds, objectives and ops, removed by the caller)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if "enum" in node:
            found.update(v for v in node["enum"] if isinstance(v, str))
        a = node.get("properties", {}).get("a") if isinstance(node.get("properties"), dict) else None
        if isinstance(a, dict) and "const" in a:
            found.add(a["const"])
        for value in node.values():
            found |= _enums(value)
    elif isinstance(node, list):
        for value in node:
            found |= _enums(value)
    return found


_VOCAB_WORDS = {"linear", "exp", "tanh", "maximize", "minimize", "above", "below"}


@pytest.mark.parametrize("task", list(TASKS))
def test_schema_enumerates_exactly_the_task_fields_where_they_fit(task: str) -> None:
    t = live(task)
    schema = sketch_schema(t.schema, action_space=t.space)
    fields = {f.name: f for f in t.schema.fields}
    assert _enums(schema) - _VOCAB_WORDS == set(fields)
    defs = schema["$defs"]
    scalars = {n for n, f in fields.items() if f.shape == ()}
    vectors = {n for n, f in fields.items() if len(f.shape) == 1}
    flags = {n for n in scalars if fields[n].unit in FLAG_UNITS}
    if scalars:
        assert set(defs["target"]["properties"]["field"]["enum"]) == scalars
        assert set(defs["scalar"]["properties"]["field"]["enum"]) == scalars
    axis_fields: set[str] = set()
    for name, d in defs.items():
        if name.startswith("axis_"):
            length = int(name.split("_")[1])
            enum = d["properties"]["field"]["enum"]
            assert all(fields[n].shape == (length,) for n in enum)
            # an enum: the grammar converter keeps it (it drops an integer's bounds)
            assert d["properties"]["axis"] == {"type": "integer", "enum": list(range(length)), "minimum": 0,
                                               "maximum": length - 1}
            axis_fields |= set(enum)
        if name.startswith("distance_"):  # a and b from one group of equal shape and unit, never equal
            variants = d.get("anyOf", [d])
            group = [v["properties"]["a"]["const"] for v in variants]
            assert len({(fields[n].shape, fields[n].unit) for n in group}) == 1
            for v in variants:
                a, b = v["properties"]["a"]["const"], v["properties"]["b"]
                partners = b["anyOf"][0]["enum"] if "anyOf" in b else []
                assert a not in partners and set(partners) <= set(group)
                # a relative field (x_to_y) is a difference already: only ever alone
                assert not ("_to_" in a and partners) and not any("_to_" in n for n in partners)
    assert axis_fields == vectors
    assert set(defs["flag"]["properties"]["field"]["enum"]) == flags if flags else "flag" not in defs
    # Discrete actions: no action-magnitude term.
    assert ("action" in defs) == (task in ("reacher", "planar_push"))
    # Every number is bounded.
    for node in _walk_schema(schema):
        if node.get("type") in ("number", "integer"):
            assert ("minimum" in node or "exclusiveMinimum" in node) and "maximum" in node, node


def test_schema_uses_only_keywords_a_grammar_converter_handles() -> None:
    """No if/then/not/patternProperties: llama.cpp's json-schema-to-grammar (and similar
    constrained decoders) handle the plain subset below."""
    allowed = {"$schema", "title", "description", "type", "properties", "required", "additionalProperties",
               "items", "minItems", "maxItems", "anyOf", "$ref", "$defs", "enum", "const", "minimum",
               "maximum", "exclusiveMinimum", "pattern", "maxLength", "default"}
    for task in ("reacher", "planar_push"):
        t = live(task)
        schema = sketch_schema(t.schema, action_space=t.space)
        used = set()
        for node in _walk_schema(schema):
            used |= set(node)
        assert used <= allowed, used - allowed
        json.dumps(schema)  # plain JSON


def _walk_schema(node: Any) -> list[dict]:
    """Every schema object (not the maps ``properties`` / ``$defs`` themselves)."""
    out: list[dict] = []
    if isinstance(node, dict):
        out.append(node)
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    out += _walk_schema(sub)
            elif key in ("items", "anyOf"):
                for sub in (value if isinstance(value, list) else [value]):
                    out += _walk_schema(sub)
            elif isinstance(value, dict):
                out += _walk_schema(value)
    return out


def test_the_json_schema_itself_accepts_the_sketches_and_rejects_bad_fields() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="the optional jsonschema package is not installed "
                                                          "(validate_sketch then uses pydantic + explicit checks)")
    for task in ("reacher", "planar_push"):
        t = live(task)
        schema = sketch_schema(t.schema, action_space=t.space)
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        assert list(validator.iter_errors(TASKS[task][1])) == []
    t = live("reacher")
    validator = jsonschema.Draft202012Validator(sketch_schema(t.schema, action_space=t.space))
    good = TASKS["reacher"][1]
    unknown = copy.deepcopy(good)
    unknown["terms"][0]["a"] = "elbow_pos"
    wrong_shape = copy.deepcopy(good)
    wrong_shape["terms"][0]["b"] = "joint_angles"
    extra = copy.deepcopy(good)
    extra["terms"][1]["gain"] = 2.0
    for bad in (unknown, wrong_shape, extra):
        assert not validator.is_valid(bad)


# -- validation messages ----------------------------------------------------------------------------


def _field_refs(sketch: dict, prefix: str = "terms") -> list[tuple[str, str]]:
    out = []
    for i, term in enumerate(sketch["terms"]):
        for key in ("a", "b", "field"):
            if term.get(key):
                out.append((f"{prefix}[{i}].{key}", term[key]))
        when = term.get("when")
        if when:
            out += [(f"{prefix}[{i}].when.{k}", when[k]) for k in ("a", "b", "field") if when.get(k)]
        if term["kind"] == "stage":
            out += _field_refs(term, f"{prefix}[{i}].terms")
    return out


@pytest.mark.parametrize("task", list(TASKS))
def test_an_unknown_field_is_rejected_naming_the_term_and_key(task: str) -> None:
    t = live(task)
    bad = copy.deepcopy(TASKS[task][1])
    term = bad["terms"][0]
    key = "a" if "a" in term else "field"
    term[key] = "warp_drive_pos"
    with pytest.raises(SketchInvalid) as err:
        compile_sketch(bad, t.schema, action_space=t.space)
    message = str(err.value)
    assert f"terms[0] ({term['kind']}) key '{key}': unknown field 'warp_drive_pos' for task {t.schema.task}" in message
    assert err.value.location == "terms[0]"
    assert "warp_drive_pos" not in _enums(sketch_schema(t.schema, action_space=t.space))


WRONG_SHAPE = [
    # (task, path into the sketch, replacement, words the message must hold)
    ("reacher", ("terms", 0, "b"), "joint_angles", ["terms[0] (distance) key 'b'", "shape (2,)",
                                                    "equal shape and unit", "target_pos"]),
    ("planar_push", ("terms", 2, "field"), "puck_vel", ["terms[2] (target) key 'field'", "shape (3,)",
                                                        "needs a scalar field", "kind 'axis'"]),
    ("planar_push", ("terms", 1, "b"), "puck_vel", ["terms[1] (distance) key 'b'", "unit 'm/s'", "unit 'm'"]),
    ("collect_wood", ("terms", 1, "field"), "player_pos", ["terms[1] (scalar) key 'field'", "shape (2,)"]),
    ("collect_wood", ("terms", 3, "terms", 0, "field"), "food",
     ["terms[3].terms[0] (flag) key 'field'", "unit 'fraction'", "0/1 or count"]),
    ("collect_wood", ("terms", 3, "when", "field"), "nearest_tree_dir", ["terms[3].when (flag) key 'field'"]),
    ("touch_ball", ("terms", 3, "field"), "boost", ["terms[3] (axis) key 'field'", "1-D vector field"]),
    ("touch_ball", ("terms", 3, "axis"), 3, ["terms[3] (axis) key 'axis'", "axis 3 is out of range", "0..2"]),
]


@pytest.mark.parametrize(("task", "path", "value", "words"), WRONG_SHAPE,
                         ids=[f"{w[0]}-{'.'.join(map(str, w[1]))}" for w in WRONG_SHAPE])
def test_a_wrong_shaped_field_is_rejected_naming_the_term_and_key(task: str, path: tuple, value: Any,
                                                                   words: list[str]) -> None:
    t = live(task)
    bad = copy.deepcopy(TASKS[task][1])
    node = bad
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(SketchInvalid) as err:
        validate_sketch(bad, t.schema, action_space=t.space)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_an_action_term_is_rejected_for_discrete_actions() -> None:
    t = live("collect_wood")
    bad = copy.deepcopy(COLLECT_WOOD)
    bad["terms"].append({"kind": "action", "name": "control", "weight": 0.1})
    with pytest.raises(SketchInvalid, match=r"terms\[5\] \(action\) key 'kind': this task's actions are discrete"):
        validate_sketch(bad, t.schema, action_space=t.space)


@pytest.mark.parametrize(("change", "words"), [
    (lambda s: s["terms"][0].update(gain=2.0), "terms[0].gain: Extra inputs are not permitted"),
    (lambda s: s["terms"][0].update(kind="teleport"), "terms[0]: Input tag 'teleport'"),
    (lambda s: s["terms"][0].update(weight=50.0), "terms[0].weight: Input should be less than or equal to 10"),
    (lambda s: s["terms"][1]["transform"].update(scale=0.0), "terms[1].transform.scale: Input should be greater"),
    (lambda s: s["terms"][2]["terms"][0].update(name="distance"), "component name 'distance' is used twice"),
    (lambda s: s["terms"][0].update(weight="1.0"), "terms[0].weight: Input should be a valid number"),
    (lambda s: s["terms"][0].update(name="Reach Me"), "terms[0].name: String should match pattern"),
    (lambda s: s.update(terms=[]), "terms: List should have at least 1 item"),
    (lambda s: s["terms"][2]["terms"].append(copy.deepcopy(s["terms"][2])), "terms[2].terms[2]: Input tag 'stage'"),
])
def test_the_vocabulary_is_strict(change: Any, words: str) -> None:
    t = live("reacher")
    bad = copy.deepcopy(TASKS["reacher"][1])
    change(bad)
    with pytest.raises(SketchInvalid) as err:
        validate_sketch(bad, t.schema, action_space=t.space)
    assert words in str(err.value), str(err.value)


def test_exp_is_a_cost_transform_only() -> None:
    t = live("touch_ball")
    bad = copy.deepcopy(TOUCH_BALL)
    bad["terms"][0]["transform"] = {"kind": "exp", "scale": 1.0}
    with pytest.raises(SketchInvalid, match=r"terms\[0\]\.transform\.kind: Input should be 'linear' or 'tanh'"):
        validate_sketch(bad, t.schema, action_space=t.space)


def test_json_text_and_models_are_accepted_and_the_example_ships() -> None:
    t = live("reacher")
    text = REACHER_SKETCH.read_text()
    sketch = validate_sketch(text, t.schema, action_space=t.space)
    assert isinstance(sketch, Sketch) and validate_sketch(sketch, t.schema) == sketch
    source = compile_sketch(text, t.schema, action_space=t.space)
    assert source == compile_sketch(sketch, t.schema, action_space=t.space)
    assert "# Goal: Move the fingertip of the arm onto the target and hold it there." in source
    assert "# terms[2].terms[0] 'precision' (distance)" in source
    assert "def compute_reward_batch(state, action):" in source
    with pytest.raises(SketchInvalid, match="not JSON"):
        validate_sketch("{terms: ", t.schema)


# -- every term kind and transform against a hand computation ---------------------------------------

TOY = StateSchema("toy", (
    Field("p", (3,), "m", "a position"),
    Field("q", (3,), "m", "another position"),
    Field("v", (3,), "m/s", "a velocity"),
    Field("s", (), "m", "a scalar"),
    Field("flag", (), "0/1", "a flag"),
    Field("count", (), "count", "a counter"),
    Field("grid", (4, 2), "m", "a 2-D field: offered to no term"),
), reader=lambda env: {})

P = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0], [0.3, -0.4, 0.0]])
Q = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
V = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [-0.5, 0.0, 2.0]])
S = np.array([0.25, -1.5, 3.0])
FLAG = np.array([0.0, 1.0, 1.0])
COUNT = np.array([2.0, 0.0, 1.0])
ACTION = np.array([[0.5, -0.5], [1.0, 0.0], [0.0, 0.0]])
TOY_STATE = State({"p": P, "q": Q, "v": V, "s": S, "flag": FLAG, "count": COUNT, "grid": np.zeros((3, 4, 2))})


def run_toy(*terms: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    source = compile_sketch({"terms": list(terms)}, TOY)
    fn = load_program(source, batched=True)
    return fn(TOY_STATE, ACTION)


def _by_hand(cost: np.ndarray, kind: str, scale: float) -> np.ndarray:
    return {"linear": [-c / scale for c in cost],
            "exp": [math.exp(-c / scale) for c in cost],
            "tanh": [1.0 - math.tanh(c / scale) for c in cost]}[kind]


@pytest.mark.parametrize("kind", ["linear", "exp", "tanh"])
def test_cost_terms_and_transforms_match_a_hand_computation(kind: str) -> None:
    scale, w = 0.5, 2.0
    t = {"kind": kind, "scale": scale}
    total, c = run_toy(
        {"kind": "distance", "name": "pq", "a": "p", "b": "q", "transform": t, "weight": w},
        {"kind": "distance", "name": "norm_v", "a": "v", "transform": t, "weight": w},
        {"kind": "distance", "name": "scalar_dist", "a": "s", "transform": t, "weight": w},
        {"kind": "target", "name": "s_to_1", "field": "s", "target": 1.0, "transform": t, "weight": w},
        {"kind": "action", "name": "ctrl", "transform": t, "weight": w},
    )
    pq = [0.0, math.sqrt(0 + 4 + 4), 0.5]  # |(0.3, -0.4, 0)| = 0.5
    norm_v = [math.sqrt(1 + 4 + 0.25), math.sqrt(9 + 1), math.sqrt(0.25 + 4)]
    scalar_dist = [0.25, 1.5, 3.0]
    s_to_1 = [0.75, 2.5, 2.0]
    ctrl = [0.5, 1.0, 0.0]
    for name, cost in [("pq", pq), ("norm_v", norm_v), ("scalar_dist", scalar_dist), ("s_to_1", s_to_1),
                       ("ctrl", ctrl)]:
        np.testing.assert_allclose(c[name], [w * g for g in _by_hand(np.array(cost), kind, scale)],
                                   rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(total, sum(c.values()), rtol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "tanh"])
def test_gain_terms_and_transforms_match_a_hand_computation(kind: str) -> None:
    scale, w = 2.0, -0.5
    t = {"kind": kind, "scale": scale}
    _, c = run_toy(
        {"kind": "scalar", "name": "s_up", "field": "s", "objective": "maximize", "transform": t, "weight": w},
        {"kind": "scalar", "name": "s_down", "field": "s", "objective": "minimize", "transform": t, "weight": w},
        {"kind": "axis", "name": "vy_up", "field": "v", "axis": 1, "transform": t, "weight": w},
        {"kind": "axis", "name": "vz_down", "field": "v", "axis": 2, "objective": "minimize", "transform": t,
         "weight": w},
    )
    g = (lambda x: x / scale) if kind == "linear" else (lambda x: math.tanh(x / scale))
    expected = {"s_up": S, "s_down": -S, "vy_up": V[:, 1], "vz_down": -V[:, 2]}
    for name, x in expected.items():
        np.testing.assert_allclose(c[name], [w * g(float(v)) for v in x], rtol=1e-12, atol=1e-12, err_msg=name)


def test_flag_bonus_and_stage_terms_match_a_hand_computation() -> None:
    total, c = run_toy(
        {"kind": "flag", "name": "flagged", "field": "flag", "weight": 3.0},
        {"kind": "flag", "name": "counted", "field": "count", "weight": 1.0},
        {"kind": "bonus", "name": "near", "weight": 2.0,
         "when": {"kind": "distance", "a": "p", "b": "q", "below": 1.0}},
        {"kind": "bonus", "name": "s_high", "weight": 1.0,
         "when": {"kind": "scalar", "field": "s", "op": "above", "value": 0.0}},
        {"kind": "bonus", "name": "vx_low", "weight": 1.0,
         "when": {"kind": "axis", "field": "v", "axis": 0, "op": "below", "value": 0.0}},
        {"kind": "stage", "name": "flag_stage", "weight": 0.5, "when": {"kind": "flag", "field": "flag"},
         "terms": [{"kind": "distance", "name": "in_stage", "a": "p", "b": "q",
                    "transform": {"kind": "linear", "scale": 1.0}, "weight": 1.0},
                   {"kind": "bonus", "name": "stage_bonus", "weight": 1.0,
                    "when": {"kind": "scalar", "field": "s", "op": "below", "value": 0.0}}]},
        {"kind": "stage", "name": "quiet_stage", "when": {"kind": "scalar", "field": "s", "op": "above", "value": 1.0},
         "terms": [{"kind": "axis", "name": "vz", "field": "v", "axis": 2, "weight": 1.0}]},
    )
    np.testing.assert_array_equal(c["flagged"], [0.0, 3.0, 3.0])
    np.testing.assert_array_equal(c["counted"], [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(c["near"], [2.0, 0.0, 2.0])  # |p - q| = 0, sqrt(8), 0.5
    np.testing.assert_array_equal(c["s_high"], [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(c["vx_low"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(c["flag_stage"], [0.0, 0.5, 0.5])  # the stage's own weight while it holds
    np.testing.assert_allclose(c["in_stage"], [0.0, -math.sqrt(8), -0.5], rtol=1e-12)
    np.testing.assert_array_equal(c["stage_bonus"], [0.0, 1.0, 0.0])  # s < 0 only in row 1, which is in the stage
    np.testing.assert_array_equal(c["vz"], [0.0, 0.0, 2.0])  # s > 1 only in row 2
    assert "quiet_stage" not in c  # weight 0: no entry-bonus component
    np.testing.assert_allclose(total, sum(c.values()), rtol=1e-12)


def test_fields_of_more_than_one_axis_are_offered_to_no_term() -> None:
    assert "grid" not in _enums(sketch_schema(TOY))
    slots = sketch_fields(TOY)
    assert slots["scalar"] == ["s", "flag", "count"] and slots["vector"] == ["p", "q", "v"]
    assert slots["flag"] == ["flag", "count"]
    with pytest.raises(SketchInvalid, match=r"terms\[0\] \(distance\) key 'a': 'grid' \(shape \(4, 2\)"):
        validate_sketch({"terms": [{"kind": "distance", "name": "g", "a": "grid"}]}, TOY)


# -- what the workbench decides for a small model --------------------------------------------------


def test_a_relative_field_is_used_alone_never_paired() -> None:
    """``fingertip_to_target`` is already a difference: |target_pos - fingertip_to_target| means
    nothing, so validation names the field and the fix, and the schema never offers the pair."""
    t = live("reacher")
    paired = {"terms": [{"kind": "distance", "name": "reach", "a": "target_pos", "b": "fingertip_to_target",
                         "weight": 1.0}]}
    with pytest.raises(SketchInvalid) as err:
        validate_sketch(paired, t.schema, action_space=t.space)
    assert "terms[0] (distance) key 'b': 'fingertip_to_target' is already a difference" in str(err.value)
    alone = {"terms": [{"kind": "distance", "name": "reach", "a": "fingertip_to_target", "weight": 1.0}]}
    validate_sketch(alone, t.schema, action_space=t.space)


def test_two_scalars_are_never_paired() -> None:
    """``x_position`` and ``torso_height`` are both metres, yet |x_position - torso_height| is no
    goal (the embedded model wrote it for "run forward" on HalfCheetah): only vector fields pair, in
    validation and in the schema; a scalar stays usable alone."""
    cheetah = StateSchema("cheetah", (
        Field("x_position", (), "m", "forward position"),
        Field("torso_height", (), "m", "torso height"),
        Field("x_velocity", (), "m/s", "forward velocity"),
    ), reader=lambda env: {})
    paired = {"terms": [{"kind": "distance", "name": "run", "a": "x_position", "b": "torso_height", "weight": 1.0}]}
    with pytest.raises(SketchInvalid) as err:
        validate_sketch(paired, cheetah)
    assert "terms[0] (distance) key 'b': 'x_position' (scalar, unit 'm') is a scalar" in str(err.value)
    assert "'target' term" in str(err.value)
    offered = [node for node in _walk_schema(sketch_schema(cheetah))
               if node.get("properties", {}).get("a", {}).get("const") in ("x_position", "torso_height")]
    assert offered and all(node["properties"]["b"] == {"type": "null", "default": None} for node in offered)
    validate_sketch({"terms": [{"kind": "distance", "name": "far", "a": "x_position", "weight": -1.0}]}, cheetah)

def test_the_decoding_schema_requires_every_key_and_validation_keeps_the_defaults() -> None:
    t = live("reacher")
    decoding = sketch_schema(t.schema, action_space=t.space, every_key=True)
    for node in _walk_schema(decoding):
        if isinstance(node.get("properties"), dict):
            assert node["required"] == [k for k in node["properties"] if k != "gain"], node  # gain: the workbench's
    # A reply that skips b (the size of one position) does not fit the decoding schema...
    import jsonschema

    term = {"kind": "distance", "name": "reach", "weight": 1.0, "a": "target_pos",
            "transform": {"kind": "linear", "scale": 1.0}}
    short = {"name": "reach", "goal": "g", "terms": [term]}
    assert list(jsonschema.Draft202012Validator(decoding).iter_errors(short))
    full = copy.deepcopy(short)
    full["terms"][0]["b"] = "fingertip_pos"
    assert not list(jsonschema.Draft202012Validator(decoding).iter_errors(full))
    # ...while a hand-written sketch may leave keys at their defaults.
    validate_sketch(short, t.schema, action_space=t.space)


def test_fields_are_ranked_by_meaning_and_only_the_top_ones_offered() -> None:
    from reward_synthesis.language.sketch_synthesis import build_sketch_messages, offered_schema, rank_fields
    from workbench.reward import BuiltReward
    from workbench.task import Task

    pytest.importorskip("sentence_transformers", reason="field ranking needs the llm extra")
    t = live("reacher")
    ranking = rank_fields(t.schema, "Move the fingertip of the arm onto the target and hold it there.")
    assert sorted(n for n, _ in ranking) == sorted(t.schema.names)
    assert {n for n, _ in ranking[:3]} == {"target_pos", "fingertip_to_target", "fingertip_pos"}, ranking
    assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)
    offered = offered_schema(t.schema, ranking, 3)
    assert offered.names == tuple(n for n, _ in ranking[:3]) and offered.reader is t.schema.reader
    enums = _enums(sketch_schema(offered, action_space=t.space)) - _VOCAB_WORDS
    assert enums == set(offered.names)  # the grammar cannot name an unoffered field
    task = Task.build(load_task(REPO / TASKS["reacher"][0]), reward=BuiltReward(None, "synthesizing"))
    prompt = build_sketch_messages(task, "reach", action="2 torques", fields=offered)[1]["content"]
    assert "joint_angles" not in prompt
    listed = [n for n in offered.names if n in prompt]
    assert sorted(listed, key=prompt.index) == list(offered.names)  # most related first


def test_the_workbench_fills_scales_from_the_samples_and_the_model_writes_none() -> None:
    """The decoding schema has no scale; fill_scales sets each missing one to the median of its
    term's quantity over the samples (two significant digits), keeps a scale that was written, and
    leaves an unknown field for validation to report."""
    t = live("reacher")
    decoding = sketch_schema(t.schema, action_space=t.space, every_key=True, scales=False)
    assert not any("scale" in (node.get("properties") or {}) for node in _walk_schema(decoding))
    data = {"terms": [
        {"kind": "distance", "name": "reach", "a": "fingertip_pos", "b": "target_pos",
         "transform": {"kind": "linear"}, "weight": 1.0},
        {"kind": "action", "name": "effort", "weight": 0.1},  # no transform at all
        {"kind": "stage", "name": "near", "weight": 0.0,
         "when": {"kind": "distance", "a": "fingertip_pos", "b": "target_pos", "below": 0.05},
         "terms": [{"kind": "scalar", "name": "nope", "field": "no_such_field", "transform": {"kind": "tanh"},
                    "weight": 1.0}]},
        {"kind": "distance", "name": "kept", "a": "fingertip_to_target",
         "transform": {"kind": "exp", "scale": 0.02}, "weight": 1.0}]}
    filled = fill_scales(data, t.samples)
    distance = np.median([np.linalg.norm(s.fingertip_pos - s.target_pos) for s, _ in t.samples])
    effort = np.median([np.sum(np.square(a)) for _, a in t.samples])
    assert filled == {"terms[0].transform.scale": float(f"{distance:.2g}"),
                      "terms[1].transform.scale": float(f"{effort:.2g}")}
    assert data["terms"][0]["transform"]["scale"] == filled["terms[0].transform.scale"]
    assert data["terms"][3]["transform"] == {"kind": "exp", "scale": 0.02}  # written: kept
    assert "scale" not in data["terms"][2]["terms"][0]["transform"]  # unknown field: validation says so
    with pytest.raises(SketchInvalid, match="no_such_field"):
        validate_sketch(data, t.schema, action_space=t.space)


def test_the_gain_is_set_by_the_workbench_and_scales_every_component() -> None:
    """The model never writes the gain (the decoding schema has none); fill_gain sets 1 - gamma and
    keeps a written one; the compiled program multiplies every component by it, the total is their
    sum, batched equals alone, and the preference checks, which compare returns, still pass."""
    t = live("planar_push")
    assert "gain" not in sketch_schema(t.schema, action_space=t.space, every_key=True, scales=False)["properties"]
    assert "gain" in sketch_schema(t.schema, action_space=t.space)["properties"]  # a user may write it
    data = copy.deepcopy(PLANAR_PUSH)
    assert fill_gain(data, 0.98) == {"gain": 0.02} and data["gain"] == 0.02
    assert fill_gain(data, 0.5) == {} and data["gain"] == 0.02  # written: kept
    assert fill_gain({"terms": []}, 1.0) == {"gain": 0.001}  # no discount: a floor, never 0
    plain = load_program(compile_sketch(PLANAR_PUSH, t.schema, action_space=t.space), batched=True)
    source = compile_sketch(data, t.schema, action_space=t.space)
    gained = load_program(source, batched=True)
    state, actions = stack(t.samples)
    (total, components), (plain_total, plain_components) = gained(state, actions), plain(state, actions)
    np.testing.assert_allclose(total, 0.02 * plain_total, rtol=1e-12)
    assert components.keys() == plain_components.keys()
    for name, values in components.items():
        np.testing.assert_allclose(values, 0.02 * plain_components[name], rtol=1e-12)
    np.testing.assert_allclose(total, sum(components.values()), rtol=0, atol=1e-15)
    one_total, _ = gained(State({n: v[3:4] for n, v in state.items()}), actions[3:4])
    assert float(one_total[0]) == pytest.approx(float(total[3]), rel=1e-12)
    report = preflight(source, t.samples, program="gained.py", preference=t.preference)
    assert report.accepted, report.render()
    with pytest.raises(SketchInvalid, match="gain"):
        validate_sketch({**data, "gain": 2.0}, t.schema, action_space=t.space)


def test_unusable_distance_thresholds_and_repeated_names_are_settled_and_recorded() -> None:
    """``below: 0`` (never true) becomes the 10% quantile of its distance on the samples, in a
    stage's inner terms too; a valid threshold stays; a repeated name gets a suffix; the result
    validates."""
    t = live("reacher")
    data = {"terms": [
        {"kind": "bonus", "name": "at", "weight": 1.0,
         "when": {"kind": "distance", "a": "fingertip_pos", "b": "target_pos", "below": 0}},
        {"kind": "bonus", "name": "at", "weight": 1.0,
         "when": {"kind": "distance", "a": "fingertip_pos", "b": "target_pos", "below": 0.05}},
        {"kind": "stage", "name": "at", "weight": 0.0,
         "when": {"kind": "distance", "a": "fingertip_to_target", "b": None, "below": -1.0},
         "terms": [{"kind": "bonus", "name": "at_2", "weight": 1.0,
                    "when": {"kind": "distance", "a": "fingertip_pos", "b": "target_pos", "below": 1e9}}]}]}
    filled = fill_thresholds(data, t.samples)
    pair = np.quantile([np.linalg.norm(s.fingertip_pos - s.target_pos) for s, _ in t.samples], 0.1)
    single = np.quantile([np.linalg.norm(s.fingertip_to_target) for s, _ in t.samples], 0.1)
    assert filled == {"terms[0].when.below": float(f"{pair:.2g}"), "terms[2].when.below": float(f"{single:.2g}"),
                      "terms[2].terms[0].when.below": float(f"{pair:.2g}")}
    assert 0 < filled["terms[0].when.below"] < 0.3 and data["terms"][1]["when"]["below"] == 0.05  # valid: kept
    assert unique_names(data) == {"terms[1].name": "at_3", "terms[2].name": "at_4"}  # at_2 was taken
    assert [data["terms"][i]["name"] for i in range(3)] == ["at", "at_3", "at_4"]
    assert fill_thresholds(data, t.samples) == {} and unique_names(data) == {}  # settled: nothing left
    validate_sketch(data, t.schema, action_space=t.space)


def test_directions_are_never_distances() -> None:
    """A unit vector's norm is always 1 (|nearest_tree_dir| says nothing): the grammar offers no
    distance of it and validation names why; it stays available as an axis."""
    t = live("collect_wood")
    fields = sketch_fields(t.schema)
    distance_fields = {n for key, group in fields.items() if key.startswith("distance_") for n in group}
    assert "nearest_tree_dir" not in distance_fields and "nearest_tree_dist" in distance_fields
    assert "nearest_tree_dir" in fields["vector"]
    bad = {"terms": [{"kind": "distance", "name": "tree", "a": "nearest_tree_dir", "weight": 1.0,
                      "transform": {"kind": "linear", "scale": 1.0}}]}
    with pytest.raises(SketchInvalid, match="nor a direction or orientation"):
        validate_sketch(bad, t.schema, action_space=t.space)


def _distance_options(schema: dict[str, Any]) -> set[tuple[str, str | None]]:
    """Every (a, b) a distance term or condition of the schema allows (b None: |a|)."""
    out: set[tuple[str, str | None]] = set()
    for node in _walk_schema(schema):
        props = node.get("properties") or {}
        if (props.get("kind") or {}).get("const") != "distance" or "const" not in (props.get("a") or {}):
            continue
        a, b = props["a"]["const"], props["b"]
        for option in b.get("anyOf", [b]):
            out |= {(a, None)} if option.get("type") == "null" else {(a, n) for n in option["enum"]}
    return out


def test_the_decoding_schema_offers_nothing_constant_on_the_samples() -> None:
    """With the pre-flight samples, the decoding schema leaves out fields and distances that never
    change on them (a term of them could only be rejected as constant); validation keeps them."""
    t = live("planar_push")
    moves = {n: float(np.max(np.ptp([np.asarray(s[n], dtype=float) for s, _ in t.samples], axis=0)))
             for n in ("puck_vel", "fingertip_pos", "goal_pos")}
    assert moves["puck_vel"] == 0 and moves["fingertip_pos"] > 0  # random actions never move the puck here
    full = _distance_options(sketch_schema(t.schema, action_space=t.space))
    pruned = _distance_options(sketch_schema(t.schema, action_space=t.space, samples=t.samples))
    assert ("puck_vel", None) in full and ("puck_vel", None) not in pruned
    assert pruned and pruned < full
    for a, b in pruned:  # everything offered varies on the samples
        d = [np.linalg.norm(np.asarray(s[a], dtype=float) - (np.asarray(s[b], dtype=float) if b else 0.0))
             for s, _ in t.samples]
        assert np.ptp(d) > 0, (a, b)
    validate_sketch({"terms": [{"kind": "distance", "name": "still", "a": "puck_vel", "weight": 1.0,
                                "transform": {"kind": "linear", "scale": 1.0}}]}, t.schema, action_space=t.space)


# -- the example sketches the prompt retrieves ------------------------------------------------------


def _examples() -> list:
    """The examples as test parameters: MuJoCo's in the default suite, the heavier simulators' slow."""
    from reward_synthesis.language.sketch_synthesis import sketch_examples

    return [pytest.param(e, id=e.env_id.replace("/", "_"),
                         marks=() if e.task.startswith("tasks/mujoco/") else pytest.mark.slow)
            for e in sketch_examples()]


@pytest.mark.parametrize("example", _examples())
def test_each_example_sketch_is_an_accepted_sketch_of_its_own_task(example: Any, tmp_path: Any) -> None:
    """What the prompt shows as an accepted sketch is one: valid for its task, compiled, and
    through the whole pre-flight (reference-policy preference included)."""
    from workbench_testing import load_shipped

    spec = load_shipped(REPO / example.task, tmp_path)
    assert spec.sim.env_id == example.env_id and spec.goal == example.goal
    sim = spec.sim.name
    if sim in ("minecraft", "rocket_league"):
        pytest.importorskip({"minecraft": "crafter", "rocket_league": "rlgym"}[sim])
    adapter = SIMS.get(sim)()
    env = adapter.make_env(spec.sim)
    try:
        profile = adapter.profile(spec.sim, env)
        samples, preference = check_inputs(env, profile, n=64)
        sketch = validate_sketch(example.sketch, profile.schema, action_space=env.action_space)
        source = compile_sketch(sketch, profile.schema, action_space=env.action_space)
    finally:
        env.close()
    report = preflight(source, samples, program="example.py", preference=preference)
    assert report.accepted, report.render()


def test_the_prompt_shows_the_closest_examples_of_other_environments_never_its_own() -> None:
    from reward_synthesis.language.sketch_synthesis import build_sketch_messages, similar_examples
    from workbench.reward import BuiltReward
    from workbench.task import Task

    pytest.importorskip("sentence_transformers", reason="retrieval needs the llm extra")
    goal = "Push the puck onto the goal marker."
    picked = similar_examples(goal, "workbench/PlanarPush-v0", 2)
    assert len(picked) == 2 and all(e.env_id != "workbench/PlanarPush-v0" for e in picked)
    assert {e.env_id for e in picked} <= {"Pusher-v5", "PushCube-v1"}  # the other pushing goals
    assert similar_examples(goal, "Pusher-v5", 1)[0].env_id != "Pusher-v5"
    assert similar_examples(goal, "x", 0) == []
    task = Task.build(load_task(REPO / "tasks/mujoco/planar_push.yaml"), reward=BuiltReward(None, "synthesizing"))
    prompt = build_sketch_messages(task, goal, action="2 torques", examples=2)[1]["content"]
    assert all(f'Goal: "{e.goal}"' in prompt for e in picked) and "puck_to_goal_distance\", \"b\"" not in prompt
    fixed = build_sketch_messages(task, goal, action="2 torques")[1]["content"]  # the default: one fixed example
    assert "Push the box onto the pad" in fixed and 'Goal: "' not in fixed


def test_a_sketch_states_the_goal_it_was_asked_for_not_the_one_the_model_echoed() -> None:
    """A small model often copies the prompt example's goal; the compiled program's header would then
    show another task's goal. The workbench keeps the task's goal and records what the reply said."""
    from types import SimpleNamespace

    from reward_synthesis.language.sketch_synthesis import _judge

    t = live("reacher")
    reply = SimpleNamespace(text=json.dumps({"name": "push_box", "goal": "Push the box onto the pad.", "terms": [
        {"kind": "distance", "name": "reach", "a": "fingertip_pos", "b": "target_pos",
         "transform": {"kind": "linear"}, "weight": 1.0}]}), latency_s=0.0, cached=False, constraint="json_schema",
        truncated=False, finish_reason="stop")
    task = SimpleNamespace(profile=t.profile, spec=load_task(REPO / TASKS["reacher"][0]))  # gamma 0.9
    attempt = _judge(0, reply, task, t.env.action_space, t.samples, t.preference,
                     "Move the fingertip onto the target.")
    assert attempt.accepted, attempt.reason
    assert attempt.filled["gain"] == 0.1 and attempt.sketch["gain"] == 0.1  # 1 - gamma, set by the workbench
    assert "'reach': 0.1 * r_reach," in attempt.code
    assert attempt.sketch is not None and attempt.sketch["goal"] == "Move the fingertip onto the target."
    assert attempt.code is not None and "# Goal: Move the fingertip onto the target." in attempt.code
    assert "Push the box" not in attempt.code and "Push the box" in attempt.filled["goal"]


def test_a_term_the_preference_check_blames_is_not_offered_again() -> None:
    """HalfCheetah, "run forward": |x_position| pursued as a closeness keeps the cheetah at the start.
    The check blames that term; the synthesis leaves it out of the next reply's schema (the other
    uses of x_position and every other distance stay), a blamed "minimize x_velocity" leaves
    "maximize x_velocity" offered, and a term the sketch avoided is not blamed on its field (the
    other sign may be right)."""
    from reward_synthesis.language.sketch_synthesis import SketchAttempt, blamed_terms, decoding_schema
    from reward_synthesis.language.sketches import term_key

    cheetah = StateSchema("cheetah", (
        Field("x_position", (), "m", "forward position"),
        Field("x_velocity", (), "m/s", "forward velocity"),
        Field("p", (3,), "m", "a point"), Field("q", (3,), "m", "another point"),
    ), reader=lambda env: {})
    sketch = {"terms": [{"kind": "distance", "name": "reach", "a": "x_position", "weight": 1.0},
                        {"kind": "distance", "name": "apart", "a": "p", "b": "q", "weight": -1.0},
                        {"kind": "stage", "name": "s", "weight": 0.0,
                         "when": {"kind": "scalar", "field": "x_velocity", "op": "above", "value": 1.0},
                         "terms": [{"kind": "scalar", "name": "slow", "field": "x_velocity",
                                    "objective": "minimize", "weight": 0.5}]},
                        {"kind": "action", "name": "effort", "weight": 0.1}]}
    report = {"results": [{"name": "preference", "passed": False, "detail": "...",
                           "blamed": ["reach", "apart", "slow", "effort"]}]}
    attempt = SketchAttempt(0, "", sketch, "", False, "", "preflight", report)
    blamed = blamed_terms(attempt)
    assert blamed == [("distance", "x_position", None), ("scalar", "x_velocity", "minimize")]
    assert term_key(sketch["terms"][1]) == ("distance", "p", "q")
    schema = decoding_schema(cheetah, None, None, exclude_terms=blamed)
    distance_as = {v["properties"]["a"]["const"] for name, d in schema["$defs"].items()
                   if name.startswith("distance_") for v in d.get("anyOf", [d])}
    assert "x_position" not in distance_as and {"x_velocity", "p", "q"} <= distance_as
    scalar = {(v["properties"]["field"]["enum"][0], tuple(v["properties"]["objective"]["enum"]))
              for v in schema["$defs"]["scalar"]["anyOf"]}
    assert scalar == {("x_position", ("maximize", "minimize")), ("x_velocity", ("maximize",))}
    assert set(schema["$defs"]["target"]["properties"]["field"]["enum"]) == {"x_position", "x_velocity"}
    # conditions keep every field: "once x_position > 5" is still a stage
    assert set(schema["$defs"]["when_scalar"]["properties"]["field"]["enum"]) == {"x_position", "x_velocity"}
    # a blamed pair leaves the pair out, not either point
    pair = decoding_schema(cheetah, None, None, exclude_terms=[("distance", "q", "p")])["$defs"]
    p_variant = next(v for d in pair.values() for v in d.get("anyOf", [d])
                     if v.get("properties", {}).get("a", {}).get("const") == "p" and "weight" in v["properties"])
    assert p_variant["properties"]["b"] == {"type": "null", "default": None}


def test_a_negative_action_cost_weight_is_settled_positive_and_a_repeated_one_dropped() -> None:
    from reward_synthesis.language.sketches import settle_action_costs

    data = {"terms": [{"kind": "action", "name": "effort", "weight": -0.02},
                      {"kind": "distance", "name": "d", "a": "p", "weight": -1.0},
                      {"kind": "action", "name": "effort_2", "weight": 1.0},
                      {"kind": "stage", "name": "s", "when": {"kind": "flag", "field": "flag"},
                       "terms": [{"kind": "action", "name": "calm", "weight": -0.5}]}]}
    assert settle_action_costs(data) == {"terms[0].weight": 0.02, "terms[3].terms[0].weight": 0.5,
                                         "terms[2]": "dropped: a repeated action cost (terms[0] is kept)"}
    assert [t["name"] for t in data["terms"]] == ["effort", "d", "s"]
    assert data["terms"][0]["weight"] == 0.02 and data["terms"][1]["weight"] == -1.0
