"""Reward sketches from the REAL local LLM server: replies constrained by the task's sketch schema."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from reward_synthesis.language.sketches import SketchInvalid, sketch_schema, validate_sketch
from reward_synthesis.llm import LLMClient, LLMConfig, ResponseCache
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[3]
REACHER = REPO / "tasks" / "mujoco" / "reacher.yaml"
PLANAR_PUSH = REPO / "tasks" / "mujoco" / "planar_push.yaml"


def _task(path: Path) -> tuple[Task, dict]:
    task = Task.build(load_task(path), reward=BuiltReward(None, "synthesizing"))
    env = task.make_env()
    try:
        schema = sketch_schema(task.profile.schema, action_space=env.action_space)
    finally:
        env.close()
    return task, schema


def _is_structural(problem: str) -> bool:
    return any(w in problem.lower() for w in ("extra inputs", "unknown", "not one of", "field required",
                                              "not json", "does not match", "not valid under", "tag"))


def _client(tmp_path: Path, **cfg: object) -> LLMClient:
    config = LLMConfig(**{"temperature": 0.7, "max_tokens": 400, **cfg})
    return LLMClient(config, transcript=tmp_path / "transcript.jsonl", cache=ResponseCache(tmp_path / "cache"))


def test_schema_reply_from_the_local_server_parses_and_matches_the_schema(llm_env: dict, tmp_path: Path) -> None:
    task, schema = _task(REACHER)
    client = _client(tmp_path)
    messages = [{"role": "user", "content": "Write a reward sketch as JSON: the fingertip should reach the target."}]
    t0 = time.monotonic()
    reply = client.chat(messages, seed=0, json_schema=schema, schema_name="reward_sketch")
    assert time.monotonic() - t0 < 60
    assert reply.constraint == "grammar"
    data = json.loads(reply.text)  # the grammar only lets JSON of the schema's shape through
    # Field names, kinds, keys and structure are enforced while sampling; numeric ranges are not
    # (llama.cpp's grammar has no number bounds): those are for validate_sketch and the repair.
    try:
        validate_sketch(data, task.profile.schema, action_space=task.make_env().action_space)
    except SketchInvalid as err:
        # What a grammar cannot say (number bounds, "a and b differ") may remain; never a wrong
        # key, kind or field name, a missing key or broken JSON.
        assert not any(_is_structural(p) for p in err.problems), err.problems
    assert reply.finish_reason == "stop"
    line = json.loads((tmp_path / "transcript.jsonl").read_text().splitlines()[-1])
    assert line["constraint"]["mode"] == "grammar" and line["constraint"]["schema_name"] == "reward_sketch"
    assert line["params"]["response_format"] == {"type": "json_object", "schema": schema}

    # The same messages without the schema are another request: the cached schema reply never answers it.
    free = client.chat(messages, seed=0, max_tokens=8)
    assert not free.cached and free.key != reply.key and free.constraint is None
    again = client.chat(messages, seed=0, json_schema=schema, schema_name="reward_sketch")
    assert again.cached and again.text == reply.text and again.constraint == "grammar"
    # A different schema (another task's) is another key as well.
    _, other = _task(PLANAR_PUSH)
    offline = LLMClient(client.config, cache=client.cache, offline=True)
    from reward_synthesis.llm import LLMCacheMiss

    with pytest.raises(LLMCacheMiss):
        offline.chat(messages, seed=0, json_schema=other, schema_name="reward_sketch")


@pytest.mark.parametrize("path", [REACHER, pytest.param(PLANAR_PUSH, marks=pytest.mark.slow)],
                         ids=["reacher", "planar_push"])  # planar_push: the same path, ~10 s more
def test_synthesize_sketch_on_the_local_model_is_accepted_and_replays_offline(
        llm_env: dict, tmp_path: Path, path: Path) -> None:
    from reward_synthesis.language.sketch_synthesis import synthesize_sketch
    from reward_synthesis.safety.checks import check_inputs

    task = Task.build(load_task(path), reward=BuiltReward(None, "synthesizing"))
    env = task.make_env()
    samples, preference = check_inputs(env, task.profile, n=64)
    env.close()
    client = _client(tmp_path)
    t0 = time.monotonic()
    result = synthesize_sketch(task, task.spec.goal, client, samples, attempts=3, seed=0, preference=preference)
    assert time.monotonic() - t0 < 60
    # The grammar holds: every reply is JSON of the schema's shape (rejections are about meaning:
    # number bounds, constant terms, the preference check), and each was constrained.
    assert all(a.stage != "json" and a.constraint == "grammar" for a in result.attempts)
    accepted = result.accepted  # measured, not promised: see the README's acceptance numbers
    if accepted is not None:
        assert accepted.stage == "accepted"
        assert "def compute_reward_batch(state, action)" in (result.code or "")
        assert validate_sketch(result.sketch, task.profile.schema) is not None
    # A rejection goes back once for repair (its exact problems); a rejected repair is followed by a
    # fresh start from the prompt. Request i is the transcript line with seed i.
    sent = {line["params"]["seed"]: line["messages"] for line in map(json.loads, (
        tmp_path / "transcript.jsonl").read_text().splitlines()) if not line.get("error")}
    for i in range(len(result.attempts)):
        assert len(sent[i]) == (2 if i % 2 == 0 else 4), [m["role"] for m in sent[i]]
        if i % 2 == 1:
            assert result.attempts[i - 1].reason in sent[i][-1]["content"]
    # --offline replays the whole synthesis from the cache: the same replies, the same verdicts.
    offline = LLMClient(client.config, cache=client.cache, offline=True)
    again = synthesize_sketch(task, task.spec.goal, offline, samples, attempts=3, seed=0, preference=preference)
    assert [a.reply for a in again.attempts] == [a.reply for a in result.attempts]
    assert all(a.cached for a in again.attempts) and again.code == result.code


THREE_SIMS = {  # one task per simulator, each with a goal in words
    "mujoco": REPO / "tasks" / "mujoco" / "reacher_text2reward.yaml",
    "crafter": REPO / "tasks" / "minecraft" / "collect_wood.yaml",
    "rocket_league": REPO / "tasks" / "rocket_league" / "touch_ball.yaml",
}
GOAL_FIELDS = {  # judged by hand: the fields each goal is about
    "mujoco": {"fingertip_pos", "target_pos", "fingertip_to_target"},
    "crafter": {"nearest_tree_dist", "nearest_tree_dir", "nearest_tree_approach", "facing_tree", "inv_wood",
                "inv_wood_delta", "ach_collect_wood"},
    "rocket_league": {"car_to_ball_dist", "car_to_ball_dir", "car_vel_toward_ball", "facing_ball", "ball_touched",
                      "ball_touched_ever", "ball_touches"},
}
_EXTRA = {"crafter": "crafter", "rocket_league": "rlgym"}


@pytest.mark.slow  # ~3 min: up to 9 replies and the pre-flight on each of three simulators
@pytest.mark.parametrize("sim", list(THREE_SIMS))
def test_sketches_are_accepted_on_three_simulators_and_read_the_goals_fields(
        llm_env: dict, tmp_path: Path, sim: str) -> None:
    """The embedded model, constrained by each task's schema, gets an accepted sketch (up to 3
    syntheses of 3 replies), and the accepted sketch reads a field the goal is about (GOAL_FIELDS):
    on-topic, not only valid. Measured, not promised: none in 3 is an xfail with the reasons
    (README: acceptance per task)."""
    from reward_synthesis.language.sketch_synthesis import synthesize_sketch
    from reward_synthesis.safety.checks import check_inputs

    if sim in _EXTRA:
        pytest.importorskip(_EXTRA[sim], reason=f"{sim} needs its extra")
    task = Task.build(load_task(THREE_SIMS[sim]), reward=BuiltReward(None, "synthesizing"))
    env = task.make_env()
    try:
        samples, preference = check_inputs(env, task.profile, n=64)
    finally:
        env.close()
    client = _client(tmp_path, max_tokens=768)  # Crafter's field names are long
    reasons = []
    for seed in (0, 2, 4):
        result = synthesize_sketch(task, task.spec.goal, client, samples, attempts=3, seed=seed,
                                   preference=preference)
        # The grammar holds: a reply is JSON of the schema's shape unless it ran out of tokens.
        assert all(a.constraint == "grammar" and (a.stage != "json" or "cut off" in a.reason)
                   for a in result.attempts), [(a.stage, a.reason) for a in result.attempts]
        if result.accepted is not None:
            break
        reasons += [a.reason.splitlines()[0] for a in result.attempts]
    else:
        pytest.xfail(f"{sim}: no sketch accepted in 3 syntheses: {reasons}")
    assert _fields_read(result.sketch) & GOAL_FIELDS[sim], result.sketch


def _fields_read(node: object) -> set[str]:
    """The StateView fields a sketch (JSON) names: every ``a``, ``b`` and ``field``."""
    if isinstance(node, list):
        return set().union(*map(_fields_read, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    named = {v for k, v in node.items() if k in ("a", "b", "field") and isinstance(v, str)}
    return named.union(*map(_fields_read, node.values()))


@pytest.mark.slow  # ~1 min: a server of its own for the default model, up to 3 replies
def test_the_default_embedded_model_writes_an_accepted_on_topic_reacher_sketch(
        needs_local_llm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default model (Gemma 3 270M; the session's server is SmolLM2 for speed) on the shipped
    Reacher goal: measured 6 of 6 fresh replies accepted (benchmarks/sketch_acceptance.py)."""
    from reward_synthesis.language.sketch_synthesis import synthesize_sketch
    from reward_synthesis.llm.models import DEFAULT_MODEL, local_model_name
    from reward_synthesis.llm.server import start_server, stop_server
    from reward_synthesis.safety.checks import check_inputs

    for name in ("WORKBENCH_LLM_URL", "WORKBENCH_LLM_MODEL", "WORKBENCH_LLM_API_KEY_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKBENCH_LLM_EMBEDDED", DEFAULT_MODEL)
    monkeypatch.setenv("WORKBENCH_LLM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WORKBENCH_LLM_CACHE", str(tmp_path / "cache"))
    task = Task.build(load_task(REACHER), reward=BuiltReward(None, "synthesizing"))
    env = task.make_env()
    try:
        samples, preference = check_inputs(env, task.profile)
    finally:
        env.close()
    start_server()
    try:
        client = LLMClient(LLMConfig(temperature=0.7, max_tokens=400).resolve(),
                           transcript=tmp_path / "transcript.jsonl", cache=ResponseCache(tmp_path / "cache"))
        result = synthesize_sketch(task, task.spec.goal, client, samples, attempts=3, seed=0, preference=preference,
                                   repairs=0)
    finally:
        stop_server()
    assert client.model == local_model_name() == "gemma-3-270m-q4_k_m"
    assert result.accepted is not None, [a.reason for a in result.attempts]
    assert _fields_read(result.sketch) & GOAL_FIELDS["mujoco"], result.sketch
