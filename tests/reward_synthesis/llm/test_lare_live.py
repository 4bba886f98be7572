"""LaRe encoder self-verification against the REAL local LLM server (SmolLM2-135M).

The small model usually writes encoders that fail verification: these tests check the plumbing
(candidates requested with distinct seeds, every reply and verdict kept, exact reasons fed back),
not the quality of what it writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reward_synthesis.episodic.lare import synthesize_encoders
from reward_synthesis.llm.sources import make_client
from reward_synthesis.safety.checks import collect_samples
from workbench.errors import RewardCodeRejected
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[3]
HOPPER_LARE = REPO / "tasks" / "mujoco" / "hopper_lare.yaml"
LLM = {"temperature": 0.7, "max_tokens": 200}


def test_candidates_are_verified_and_repaired_with_the_exact_reason(llm_env: dict, tmp_path: Path) -> None:
    task = Task.build(load_task(HOPPER_LARE), reward=BuiltReward(None, "synthesizing"))
    env = task.make_env()
    samples = collect_samples(env, task.profile.schema, n=32, seed=0)
    env.close()
    transcript = tmp_path / "transcript.jsonl"
    client = make_client(LLM, transcript=transcript)
    result = synthesize_encoders(task, task.spec.goal, client, samples, candidates=2, attempts=2, seed=0)

    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert len(lines) == len(result.attempts)
    assert {a.candidate for a in result.attempts} == {0, 1}
    assert len({a.seed for a in result.attempts}) == len(result.attempts)  # distinct request seeds
    for a in result.attempts:
        assert a.accepted == (a.reason == "")
        if a.code is not None:
            assert a.report is not None and a.report["sha256"] == a.sha256
        if a.accepted:
            assert 1 <= len(a.factors) <= 8
    # Where a candidate's first reply failed, its repair request carried that exact reason.
    for c in (0, 1):
        tries = [(i, a) for i, a in enumerate(result.attempts) if a.candidate == c]
        if len(tries) > 1:
            first_index, first = tries[0]
            repair = lines[tries[1][0]]["messages"]
            assert repair[-2] == {"role": "assistant", "content": first.reply}
            assert first.reason in repair[-1]["content"]
    assert "encode_factors" in lines[0]["messages"][0]["content"]
    assert "x_velocity" in lines[0]["messages"][1]["content"]  # the StateView the model was shown


@pytest.mark.slow  # ~12 s on 2 cores; verification and repair stay in the default suite
def test_source_without_an_encoder_asks_the_llm_and_keeps_every_verdict(llm_env: dict, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(tmp_path))
    spec = load_task(HOPPER_LARE, ["reward.encoder=null", "reward.candidates=2", "reward.attempts=1",
                                   "reward.samples=32", "reward.llm.max_tokens=200"])
    try:
        built = Task.build(spec).reward
    except RewardCodeRejected as err:  # usual for a 135M model: one clear message, all kept
        assert "candidate 0 attempt 0" in str(err) and "candidate 1 attempt 0" in str(err)
        kept = next((tmp_path / "synth").glob("hopper_lare__lare_failed__*"))
        synthesis = json.loads((kept / "reward" / "lare_synthesis.json").read_text())
        assert len(synthesis["attempts"]) == 2 and synthesis["verified"] == 0
        assert (kept / "llm" / "lare_transcript.jsonl").read_text().count("\n") == 2
        return
    synthesis = json.loads(built.files["reward/lare_synthesis.json"])
    assert synthesis["verified"] >= 1 and len(synthesis["attempts"]) == 2
    assert built.resolved["encoder"] == [f"reward/encoder_{k}.py" for k in range(synthesis["verified"])]
    assert built.record["encoder_source"] == "llm"


@pytest.mark.slow  # ~14 s, and it xfails while Gemma writes no verifiable sketch encoder in 3 replies
def test_sketch_mode_encoders_are_sketches_whose_terms_are_the_factors(llm_env: dict, tmp_path: Path) -> None:
    """Mode sketch: each reply is a schema-constrained sketch; an accepted one becomes an encoder
    whose factors are its terms, verified like a written encoder and loadable by LaRe."""
    from reward_synthesis.episodic.lare import LatentEncoder, synthesize_sketch_encoders
    from reward_synthesis.language.sketch_synthesis import SCHEMA_NAME

    task = Task.build(load_task(HOPPER_LARE), reward=BuiltReward(None, "synthesizing"))
    env = task.make_env()
    samples = collect_samples(env, task.profile.schema, n=64, seed=0)
    env.close()
    transcript = tmp_path / "transcript.jsonl"
    client = make_client({"temperature": 0.7, "max_tokens": 400}, transcript=transcript)
    result = synthesize_sketch_encoders(task, task.spec.goal, client, samples, candidates=1, attempts=3, seed=0)

    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert len(lines) == len(result.attempts) >= 1
    assert all(line["constraint"]["schema_name"] == SCHEMA_NAME for line in lines)  # every reply: a sketch
    assert [a.seed for a in result.attempts] == list(range(len(result.attempts)))  # fresh requests
    for a in result.attempts:
        assert a.accepted == (a.reason == "")
        if a.accepted:
            names = [t["name"] for t in a.sketch["terms"] if t["kind"] != "stage"]
            assert a.factors and set(a.factors) <= set(names) | {n for t in a.sketch["terms"] if t["kind"] == "stage"
                                                                 for n in [t["name"]] + [u["name"] for u in t["terms"]]}
            assert a.code.startswith("# LaRe encoder compiled from the reward sketch")
            encoder = LatentEncoder([("encoder.py", a.code)], [a.factors])
            assert encoder(*samples[0]).shape == (len(a.factors),)
    if not result.verified:
        pytest.xfail(f"no sketch encoder verified in 3 replies: {[a.reason.splitlines()[0] for a in result.attempts]}")
