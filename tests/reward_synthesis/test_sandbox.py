"""The sandbox: AST allow-list, restricted namespace, output contract and the isolated run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from reward_synthesis.safety import sandbox
from reward_synthesis.safety.sandbox import (
    ALLOWED_NUMPY,
    SAFE_BUILTINS,
    Violation,
    load_program,
    normalize_output,
    run_isolated,
    static_check,
)
from workbench.errors import RewardCodeRejected
from workbench.state import State

HOSTILE_DIR = Path(__file__).resolve().parents[1] / "data" / "hostile_rewards"
HOSTILE = sorted(HOSTILE_DIR.glob("*.py"))

from reward_programs import GOOD, program  # noqa: E402


def make_samples(n: int = 6, seed: int = 0) -> list[tuple[State, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (State({"fingertip_pos": rng.normal(size=3), "target_pos": rng.normal(size=3)}),
         rng.normal(size=2))
        for _ in range(n)
    ]


def expected_fragment(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <fragment>'"
    return first.removeprefix("# expect: ")


# -- static_check: the hostile corpus --------------------------------------------------------


def test_hostile_corpus_is_large_enough() -> None:
    assert len(HOSTILE) >= 25


@pytest.mark.parametrize("path", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_hostile_program_is_rejected_for_the_right_reason(path: Path) -> None:
    source = path.read_text()
    violations = static_check(source, path.name)
    fragment = expected_fragment(path)
    assert violations, f"{path.name} passed the AST check"
    assert any(fragment in v.message for v in violations), [str(v) for v in violations]
    with pytest.raises(RewardCodeRejected, match="rejected by the sandbox"):
        load_program(source, filename=path.name)


# -- static_check: what is allowed ------------------------------------------------------------


@pytest.mark.parametrize("source", [
    GOOD,
    program("return -float(np.linalg.norm(action))"),
    program("return sqrt(2.0) + norm(action)",
            header="from numpy import sqrt\nfrom numpy.linalg import norm\n"),
    program("return float(la.norm(action))", header="import numpy.linalg as la\n"),
    program("return float(linalg.norm(action))", header="from numpy import linalg\n"),
    program("return math.exp(-float(numpy.abs(action).sum())) * math.pi",
            header="import math\nimport numpy\n"),
    program("""
total = 0.0
for _ in range(3):
    total += sum([x * x for x in action])
scale = (lambda v: v / 2)(total)
try:
    ratio = 1.0 / scale
except ZeroDivisionError as err:
    ratio = 0.0
assert len(f"{ratio:.3f}") > 0
return ratio if (n := len(state)) else 0.0
"""),
    "import numpy as np\ncompute_reward = lambda state, action: float(np.sum(action))\n",
    program("return helper(state.fingertip_pos)") + "\ndef helper(x):\n    return float(x[0])\n",
], ids=["example", "norm", "from-imports", "linalg-alias", "from-linalg", "math", "syntax-mix",
        "lambda-entry", "helper"])
def test_ordinary_reward_code_passes(source: str) -> None:
    assert static_check(source) == []


def test_violation_renders_like_a_compiler_message() -> None:
    violations = static_check(program("return float(len(open('x').read()))"), "reward.py")
    assert [str(v) for v in violations] == ["reward.py:4:22: call to 'open' is not allowed"]
    assert violations[0] == Violation(4, 22, "call to 'open' is not allowed", "reward.py")


def test_every_dangerous_builtin_is_named() -> None:
    names = ["exec", "eval", "compile", "open", "getattr", "setattr", "globals", "locals", "vars",
             "breakpoint", "input", "type", "object", "super", "memoryview", "help", "exit",
             "print", "delattr", "id"]
    source = program("\n".join(f"{name}()" for name in names) + "\nreturn 0.0")
    messages = [v.message for v in static_check(source)]
    assert messages == [f"call to '{name}' is not allowed" for name in names]


def test_undefined_names_and_missing_entry_point() -> None:
    assert "name 'np' is not defined" in static_check(program("return np.sum(action)", ""))[0].message
    missing = static_check("import numpy as np\ndef reward(state, action):\n    return 0.0\n")
    assert [v.message for v in missing] == [
        "program must define 'compute_reward(state, action)' at top level (or "
        "'compute_reward_batch(state, action)' for a batched program)"]


@pytest.mark.parametrize("source, fragment", [
    ("x" * (sandbox.MAX_SOURCE_BYTES + 1), "the limit is 65536"),
    ("def compute_reward(state, action):\n    return (\n", "syntax error"),
    ("def compute_reward(state, action):\n    return 1\x00\n", "null"),
    ("(" * 500 + ")" * 500, "too many nested parentheses"),
    ("x = " + "-" * 20000 + "1", ""),
    ("x = " + "a." * 20000 + "b", ""),
    (b"import os", "must be text"),
    (None, "must be text"),
])
def test_static_check_never_crashes(source: object, fragment: str) -> None:
    violations = static_check(source)  # type: ignore[arg-type]
    assert violations
    assert fragment in " ".join(v.message for v in violations)


def test_syntax_error_reports_its_line() -> None:
    [violation] = static_check("import numpy as np\n\ndef compute_reward(state, action)\n", "r.py")
    assert violation.line == 3 and "syntax error" in violation.message


def test_allowed_numpy_names_exist() -> None:
    # A name that numpy dropped would silently vanish from the runtime view.
    missing = sorted(name for name in ALLOWED_NUMPY if not hasattr(np, name))
    assert missing == []


# -- load_program and the restricted namespace --------------------------------------------


def test_load_program_runs_in_process() -> None:
    fn = load_program(GOOD, filename="reward.py")
    state, action = make_samples(1)[0]
    total, parts = normalize_output(fn(state, action))
    dist = float(np.linalg.norm(state.fingertip_pos - state.target_pos))
    assert parts["distance"] == pytest.approx(-dist)
    assert total == pytest.approx(parts["distance"] + parts["control"])


@pytest.mark.parametrize("body", [
    "state.fingertip_pos[0] = 1.0\nreturn 0.0",
    "v = state.fingertip_pos\nv += 1\nreturn 0.0",
    "np.asarray(state.target_pos)[:] = 0\nreturn 0.0",
])
def test_program_cannot_modify_the_state(body: str) -> None:
    fn = load_program(program(body))
    state, action = make_samples(1)[0]
    before = state.to_arrays()
    with pytest.raises(ValueError, match="read-only"):
        fn(state, action)
    for name, value in before.items():
        np.testing.assert_array_equal(state[name], value)


def test_runtime_namespace_holds_only_safe_builtins() -> None:
    fn = load_program(GOOD)
    builtins_seen = fn.__globals__["__builtins__"]
    checked = {"range", "sum", "pow", "__checked_pow__", "__checked_lshift__", "__checked_mul__"}
    assert set(builtins_seen) == set(SAFE_BUILTINS) | {"__import__"} | checked
    assert builtins_seen["range"] is not range  # the size-checked one
    assert "open" not in builtins_seen and "getattr" not in builtins_seen


def test_restricted_import_hands_out_views_only() -> None:
    for name in ("os", "sys", "numpy.ctypeslib", "numpy.lib", "numpy.lib.format", "numpy._core.nonexistent"):
        with pytest.raises(ImportError):
            sandbox._restricted_import(name)
    # numpy's own lazy imports of its loaded internals go through (x.sum() needs _methods).
    assert sandbox._restricted_import("numpy._core._methods", fromlist=("_sum",)).__name__ == "numpy._core._methods"
    with pytest.raises(ImportError):
        sandbox._restricted_import("numpy", level=1)
    numpy_view = sandbox._restricted_import("numpy")
    assert numpy_view is not np
    for name in ("load", "save", "memmap", "ctypeslib", "lib", "ndarray", "frombuffer"):
        assert not hasattr(numpy_view, name), name
    assert numpy_view.sqrt is np.sqrt
    assert [n for n in vars(numpy_view.linalg) if not n.startswith("_")] == ["norm"]
    assert sandbox._restricted_import("numpy.linalg", fromlist=("norm",)) is numpy_view.linalg
    assert sandbox._restricted_import("math").sqrt is math.sqrt


@pytest.mark.parametrize("source, fragment", [
    ("import numpy as np\ndef reward(state, action):\n    return 0.0\n", "must define"),
    ("compute_reward = 3\n", "must be a function, got int"),
    (program("return 0.0").replace("(state, action)", "(state)"), "exactly two positional"),
    (program("return 0.0").replace("(state, action)", "(state, action, w=1.0)"),
     "exactly two positional"),
    (program("return 0.0").replace("(state, action)", "(state, *rest)"), "exactly two positional"),
])
def test_load_program_rejects_a_malformed_entry_point(source: str, fragment: str) -> None:
    with pytest.raises(RewardCodeRejected, match=fragment):
        load_program(source)


def test_load_program_reports_a_failing_module_body_with_its_line() -> None:
    source = "import numpy as np\nSCALE = 1 / 0\n" + program("return SCALE", "")
    with pytest.raises(RewardCodeRejected, match=r"ZeroDivisionError.*reward\.py:2") as info:
        load_program(source, filename="reward.py")
    assert isinstance(info.value.__cause__, ZeroDivisionError)


# -- normalize_output -----------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (1.5, (1.5, {})),
    (-2, (-2.0, {})),
    (np.float32(0.25), (0.25, {})),
    (np.array(3.0), (3.0, {})),
    ((np.float64(1.0), {"a": np.array(2.0), "b": 3}), (1.0, {"a": 2.0, "b": 3.0})),
    ((0.0, {}), (0.0, {})),
])
def test_normalize_output_accepts_the_contract(value: object, expected: tuple) -> None:
    total, parts = normalize_output(value)
    assert (total, parts) == expected
    assert type(total) is float and all(type(v) is float for v in parts.values())


@pytest.mark.parametrize("value, fragment", [
    ("1.0", "the value is str"),
    ([1.0], "the value is list"),
    (None, "the value is NoneType"),
    (True, "bool"),
    (np.array([1.0]), "array of shape (1,)"),
    ((1.0, {"a": 1.0}, 2), "tuple of length 3"),
    ((1.0, [("a", 1.0)]), "second item is list"),
    ((1.0, {1: 1.0}), "component key 1 is not a str"),
    ((1.0, {"a": "x"}), "component 'a' is str"),
    ((np.zeros(3), {}), "the total is an array"),
])
def test_normalize_output_rejects_everything_else(value: object, fragment: str) -> None:
    with pytest.raises(TypeError, match="compute_reward must return") as info:
        normalize_output(value)
    assert fragment in str(info.value)


# -- run_isolated ---------------------------------------------------------------------------


def test_run_isolated_matches_in_process_results_under_default_limits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    samples = make_samples(8)
    result = run_isolated(GOOD, samples, filename="reward.py")  # 2048 MB with numpy imported
    assert result.ok, result.error
    assert result.error_kind is None and result.n_calls == 8
    fn = load_program(GOOD)
    expected = [normalize_output(fn(s, a)) for s, a in samples]
    np.testing.assert_allclose(result.totals, [t for t, _ in expected])
    np.testing.assert_allclose(result.components["control"], [p["control"] for _, p in expected])
    assert result.call_seconds.shape == (8,) and np.all(result.call_seconds >= 0)
    assert list(tmp_path.iterdir()) == []  # the worker's directory is cleaned up


CPU_BURNER = program("""
total = 0
for i in range(10**6):
    for j in range(10**6):
        total += j
return float(total)
""", "")


def test_cpu_burner_hits_the_cpu_limit() -> None:
    source = CPU_BURNER
    result = run_isolated(source, make_samples(1), cpu_seconds=1, wall_seconds=20)
    assert not result.ok and result.error_kind == "cpu_limit", result.error
    assert result.wall_seconds < 10


def test_cpu_burner_hits_the_wall_clock_limit() -> None:
    source = CPU_BURNER
    result = run_isolated(source, make_samples(1), cpu_seconds=60, wall_seconds=1.5)
    assert not result.ok and result.error_kind == "timeout", result.error
    assert result.wall_seconds < 10


def test_memory_limit_applies_in_the_child() -> None:
    # 1.6 GB from broadcasting two capped arrays: fine with 4 GB of address space, refused with 1 GB.
    source = program("z = np.ones(1_000_000)[:, None] * np.ones(200)\nreturn float(z[0, 0]) + float(action[0])")
    roomy = run_isolated(source, make_samples(1), memory_mb=4096)
    assert roomy.ok, roomy.error
    tight = run_isolated(source, make_samples(1), memory_mb=1024)
    assert not tight.ok and tight.error_kind == "memory", tight.error
    assert "(at <reward>:4: z = np.ones(1_000_000)[:, None] * np.ones(200))" in tight.error


def test_python_memory_bomb_is_contained() -> None:
    result = run_isolated(program("return float(len([0] * 10**10))", ""), make_samples(1))
    assert not result.ok and result.error_kind in ("memory", "exception"), result.error


def test_exception_names_type_message_and_line() -> None:
    source = program("x = 0.0 * action[0]\nreturn 1 // int(x)", "")
    result = run_isolated(source, make_samples(3), filename="reward.py")
    assert result.error_kind == "exception" and result.failed_index == 0
    assert result.error == ("sample 0: ZeroDivisionError: integer division or modulo by zero "
                            "(at reward.py:4: return 1 // int(x))")


@pytest.mark.parametrize("source, kind, fragment", [
    (program("return 'high'"), "bad_output", "the value is str"),
    (program("""
if action[0] > 0:
    return 1.0, {"a": 1.0, "b": 0.0}
return 1.0, {"a": 1.0}
"""), "bad_output", "same component names"),
    ("import numpy as np\ndef reward(state, action):\n    return 0.0\n", "rejected", "must define"),
    (program("return 0.0").replace("(state, action)", "(state)"), "rejected",
     "exactly two positional"),
    ("X = 1 / 0\n" + program("return 0.0", ""), "exception", "while loading: ZeroDivisionError"),
])
def test_failures_are_classified(source: str, kind: str, fragment: str) -> None:
    samples = make_samples(6, seed=1)
    assert {bool(a[0] > 0) for _, a in samples} == {True, False}  # both branches are hit
    result = run_isolated(source, samples)
    assert not result.ok and result.error_kind == kind
    assert fragment in result.error


def test_child_environment_does_not_inherit_the_parents(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    env = sandbox._child_env(tmp_path)
    assert "OPENAI_API_KEY" not in env and "sk-secret" not in env.values()
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["HOME"] == str(tmp_path)


def test_samples_must_share_fields() -> None:
    samples = make_samples(2)
    samples[1] = (State({"other": np.zeros(3)}), samples[1][1])
    with pytest.raises(ValueError, match="same state fields"):
        run_isolated(GOOD, samples)
