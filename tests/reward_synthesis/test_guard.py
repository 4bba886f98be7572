"""Reward programs at run time: the same inputs as in the pre-flight, no state between calls,
bounded C calls, a watchdog on Python loops and finite outputs (issue 13, part 1 and 2)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from reward_programs import GOOD, program

from reward_synthesis.program import CodeRewardProgram
from reward_synthesis.safety.checks import preflight
from reward_synthesis.safety.guard import Watchdog
from reward_synthesis.safety.limits import MAX_ELEMENTS
from reward_synthesis.safety.sandbox import load_program, run_isolated, static_check
from workbench.errors import RewardCodeRejected, RewardGuardError, RewardRuntimeError
from workbench.state import State


def states(n: int = 8, seed: int = 0) -> list[tuple[State, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(State({"fingertip_pos": rng.normal(size=3), "target_pos": rng.normal(size=3)}),
             rng.uniform(-1, 1, size=2)) for _ in range(n)]


def call(prog: CodeRewardProgram, state: State, action: np.ndarray) -> tuple[float, dict[str, float]]:
    return prog(state, action, state)


# -- the same inputs everywhere ----------------------------------------------------------------

WRITABLE_ACTION_DETECTOR = program("""
try:
    action[0] = action[0]
    return 1e6            # only where the action is writable: 'training'
except ValueError:
    return float(-np.linalg.norm(state.fingertip_pos - state.target_pos))
""")


def test_training_hands_the_program_the_same_read_only_action_as_the_preflight() -> None:
    samples = states(4)
    isolated = run_isolated(WRITABLE_ACTION_DETECTOR, samples)
    assert isolated.ok, isolated.error
    prog = CodeRewardProgram(WRITABLE_ACTION_DETECTOR)
    # The learner hands a writable float32 action, as SB3 does.
    trained = [call(prog, s, a.astype(np.float32))[0] for s, a in samples]
    np.testing.assert_allclose(trained, isolated.totals)
    assert max(trained) < 1e6


# -- no state between calls --------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "calls = [0]\n" + program("""
calls[0] += 1
return 1e9 if calls[0] > 3 else 0.0
""", ""),
    "seen = {}\n" + program("""
seen["n"] = seen.get("n", 0) + 1
return float(seen["n"])
""", ""),
    program("return count()", "") + "\ndef count(memo=[]):\n    memo.append(1)\n    return float(len(memo))\n",
    "import numpy as np\nW = np.zeros(1)\n" + program("W[0] += 1.0\nreturn float(W[0])", ""),
    "make = lambda box: (lambda: box)\nget = make([0])\n" + program("""
box = get()
box[0] += 1
return float(box[0])
""", ""),
], ids=["list-counter", "dict-counter", "mutable-default", "module-array", "closure-cell"])
def test_module_level_state_cannot_count_calls(source: str) -> None:
    assert static_check(source) == []
    fn = load_program(source)
    state, action = states(1)[0]
    with pytest.raises((TypeError, ValueError, AttributeError)):
        fn(state, action)
    # ... and so the pre-flight rejects it, with the reason.
    result = run_isolated(source, states(2))
    assert not result.ok and result.error_kind == "exception"


@pytest.mark.parametrize("header", [
    "it = map(float, range(10))\n",
    "gen = (i for i in range(10))\n",
    "pairs = zip(range(3), range(3))\n",
])
def test_module_level_iterators_are_refused_at_load(header: str) -> None:
    with pytest.raises(RewardCodeRejected, match="keeps state between calls"):
        load_program(header + program("return 0.0", ""))


def test_module_level_constants_stay_usable() -> None:
    source = """
import numpy as np
WEIGHTS = {"distance": 1.0, "control": 0.1}
AXES = [0, 1, 2]
SCALE = np.array([1.0, 2.0, 3.0])
def compute_reward(state, action):
    d = float(np.sum(SCALE[AXES] * np.abs(state.fingertip_pos)))
    return -WEIGHTS["distance"] * d - WEIGHTS.get("control", 0.0) * float(np.sum(action ** 2))
"""
    fn = load_program(source)
    state, action = states(1)[0]
    assert math.isfinite(fn(state, action))


# -- ordinary numpy code that the sandbox used to reject ----------------------------------------

ORDINARY = [
    program("return float(np.clip(action, 0, 1).sum())"),
    program("return float(action.mean() + action.std() + action.max())"),
    program("return float(len(str(action)) > 0) + float(len(repr(action.view(np.float64))) > 0)"),
    program("return -_distance(state.fingertip_pos, state.target_pos)")
    + "\ndef _distance(a, b):\n    return float(np.linalg.norm(a - b))\n",
    program("_scale = 0.5\nreturn _scale * float(np.sum(action * action))"),
    program("return total(list(action))") + "\ndef total(xs: list[float]) -> float:\n"
    "    kinds: dict = {}\n    return float(sum(xs)) if isinstance(xs, (list, tuple)) else 0.0\n",
]


@pytest.mark.parametrize("source", ORDINARY, ids=["clip-sum", "methods", "str-view", "underscore-helper",
                                                  "underscore-local", "type-hints"])
def test_ordinary_numpy_code_runs_in_process_and_isolated(source: str) -> None:
    assert static_check(source) == []
    fn = load_program(source)
    for state, action in states(3):
        assert math.isfinite(fn(state, action))
    result = run_isolated(source, states(3))
    assert result.ok, result.error


# -- one C call cannot run unbounded -----------------------------------------------------------


@pytest.mark.parametrize("expr, error", [
    ("sum(range(10**13))", ValueError),
    ("len([0] * 10**9)", ValueError),
    ("len('ab' * 10**9)", ValueError),
    ("len([0.0] * np.int64(10**9))", ValueError),
    ("(2 ** 10**9) % 7", OverflowError),
    ("pow(3, 10**8) % 7", OverflowError),
    ("(1 << 10**9) % 7", OverflowError),
    ("np.zeros(10**9).sum()", ValueError),
    ("np.ones((10**5, 10**5)).sum()", ValueError),
    ("np.arange(0, 1e12).sum()", ValueError),
    ("np.linspace(0, 1, 10**9).sum()", ValueError),
    ("np.tile(action, 10**9).sum()", ValueError),
    ("np.outer(np.ones(10**5), np.ones(10**5)).sum()", ValueError),
    ("sum([[0]] * 1000, [])", TypeError),
])
def test_operations_that_grow_in_one_c_call_are_bounded(expr: str, error: type) -> None:
    fn = load_program(program(f"return float({expr})"))
    state, action = states(1)[0]
    started = time.perf_counter()
    with pytest.raises(error):
        fn(state, action)
    assert time.perf_counter() - started < 1.0


def test_augmented_operators_are_bounded_too() -> None:
    fn = load_program(program("xs = [0]\nxs *= 10**9\nn = 2\nn **= 10**9\nreturn 0.0"))
    with pytest.raises(ValueError, match=f"at most {MAX_ELEMENTS:,}"):
        fn(*states(1)[0])


def test_bounded_operators_keep_their_results() -> None:
    fn = load_program(program("""
xs = [1.0, 2.0] * 3
a = np.arange(6.0) * 2
b = np.tile(action, 2)
return float(sum(xs) + a.sum() + b.sum() + 2 ** 10 + (1 << 3) + 3 * 4 + action[0] ** 2)
"""))
    state, action = states(1)[0]
    expected = 9.0 + 30.0 + 2 * float(action.sum()) + 1024 + 8 + 12 + float(action[0]) ** 2
    assert fn(state, action) == pytest.approx(expected)


# -- the watchdog ------------------------------------------------------------------------------

PYTHON_LOOP = program("""
total = 0.0
for i in range(1000000):
    for j in range(1000000):
        try:
            total += i * j
        except Exception:
            total = 0.0
return total
""", "")


def test_watchdog_stops_a_python_loop_that_swallows_exceptions() -> None:
    prog = CodeRewardProgram(PYTHON_LOOP, filename="slow.py", timeout_s=0.3)
    state, action = states(1)[0]
    started = time.perf_counter()
    with pytest.raises(RewardGuardError, match=r"reward program slow.py \(call 1\) ran longer than its "
                                               r"limit of 0.3 s"):
        call(prog, state, action)
    assert time.perf_counter() - started < 2.0
    # The thread is usable again, and a good program runs under the same watchdog.
    good = CodeRewardProgram(GOOD)
    assert math.isfinite(call(good, state, action)[0])


def test_watchdog_costs_nothing_for_fast_calls() -> None:
    good = CodeRewardProgram(GOOD)
    state, action = states(1)[0]
    fired = Watchdog.get().fired
    for _ in range(2000):
        call(good, state, action)
    assert Watchdog.get().fired == fired


# -- values ------------------------------------------------------------------------------------

SOMETIMES_NAN = program("""
if state.fingertip_pos[0] > 100.0:
    return float("nan"), {"distance": 0.0}
if state.fingertip_pos[0] < -100.0:
    return 0.0, {"distance": float("inf")}
return 1.0, {"distance": 1.0}
""", "")


def test_non_finite_output_stops_with_the_program_and_the_call() -> None:
    prog = CodeRewardProgram(SOMETIMES_NAN, filename="nan.py")
    ok = State({"fingertip_pos": np.zeros(3), "target_pos": np.zeros(3)})
    assert call(prog, ok, np.zeros(2)) == (1.0, {"distance": 1.0})
    far = State({"fingertip_pos": np.array([200.0, 0, 0]), "target_pos": np.zeros(3)})
    with pytest.raises(RewardGuardError, match=r"nan.py \(call 2\) returned a non-finite total \(nan\)"):
        call(prog, far, np.zeros(2))
    low = State({"fingertip_pos": np.array([-200.0, 0, 0]), "target_pos": np.zeros(3)})
    with pytest.raises(RewardGuardError, match="non-finite component"):
        call(prog, low, np.zeros(2))


def test_a_raising_program_is_a_runtime_error_naming_the_call() -> None:
    prog = CodeRewardProgram(program("return 1.0 / float(state.fingertip_pos[0] > 1e9)"),
                             filename="div.py")
    with pytest.raises(RewardRuntimeError, match=r"div.py \(call 1\) raised during training: "
                                                 r"ZeroDivisionError"):
        call(prog, *states(1)[0][:1], np.zeros(2))


@pytest.mark.parametrize("components, fragment", [
    ("{f'c{i}': 0.0 for i in range(1000)}", "1000 components"),
    ("{'\\x1b[31mred': 0.0}", "printable"),
    ("{'x' * 200: 0.0}", "printable"),
])
def test_components_are_capped_and_printable(components: str, fragment: str) -> None:
    source = program(f"return 0.0, {components}", "")
    result = run_isolated(source, states(1))
    assert not result.ok and result.error_kind == "bad_output"
    assert fragment in result.error
    assert "\x1b" not in result.error


def test_preflight_and_training_agree_on_an_accepted_program() -> None:
    samples = states(16)
    report = preflight(GOOD, samples)
    assert report.accepted, report.render()
    prog = CodeRewardProgram(GOOD)
    isolated = run_isolated(GOOD, samples)
    np.testing.assert_allclose([call(prog, s, a)[0] for s, a in samples], isolated.totals)


def test_programs_survive_pickling_for_subprocess_envs() -> None:
    import pickle

    prog = CodeRewardProgram(GOOD, filename="good.py", timeout_s=1.5)
    clone = pickle.loads(pickle.dumps(prog))
    state, action = states(1)[0]
    assert call(clone, state, action) == call(prog, state, action)
    assert clone.timeout_s == 1.5


# -- the hard timer ----------------------------------------------------------------------------

RUNAWAY_C_CALL = """
import sys, time
from reward_synthesis.safety import guard

guard.Watchdog._instance = guard.Watchdog(hard_timeout_s=3.0)
# Outside the sandbox on purpose: one C call that holds the interpreter for minutes, which the
# watchdog's exception cannot interrupt (reward code cannot build this one: range is capped).
guard.guarded_call(lambda: sum(range(10**13)), (), timeout_s=0.5, describe=lambda: "runaway")
print("returned", flush=True)
"""


def test_hard_timer_ends_a_process_stuck_in_one_c_call(tmp_path) -> None:
    import subprocess
    import sys

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", RUNAWAY_C_CALL], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1 and "returned" not in proc.stdout
    assert "Timeout" in proc.stderr and "<lambda>" in proc.stderr  # every thread's stack, for the user
    assert elapsed < 30


BUSY_ELSEWHERE = """
import time
from reward_synthesis.safety import guard

guard.Watchdog._instance = guard.Watchdog(hard_timeout_s=1.5)
guard.guarded_call(lambda: 0.0, (), timeout_s=0.5, describe=lambda: "quick")
assert guard.Watchdog._instance.armed_until
t = time.monotonic()
while time.monotonic() - t < 4.0:  # Python work, no reward calls, longer than the hard timeout
    sum(i * i for i in range(10000))
print("alive", flush=True)
"""


def test_hard_timer_spares_a_process_that_is_busy_elsewhere() -> None:
    """Seconds without reward calls (a long policy update) must not trip the timer."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", BUSY_ELSEWHERE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "alive" in proc.stdout, proc.stderr


FORK_WHILE_ARMED = """
import os, time
from reward_synthesis.safety import guard

guard.guarded_call(lambda: 0.0, (), timeout_s=0.5, describe=lambda: "parent")
watchdog = guard.Watchdog._instance
assert watchdog.armed_until  # the hard timer is armed when the process forks
pid = os.fork()
if pid == 0:  # the child: its first guarded call arms its own timer and returns
    guard.guarded_call(lambda: 0.0, (), timeout_s=0.5, describe=lambda: "child")
    os._exit(0 if guard.Watchdog._instance is not watchdog and guard.Watchdog._instance.armed_until else 3)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    raise SystemExit("the forked child hung in its first guarded call")
assert os.waitstatus_to_exitcode(status) == 0, status
assert watchdog.armed_until  # the parent's timer is armed again after the fork
guard.guarded_call(lambda: 0.0, (), timeout_s=0.5, describe=lambda: "parent again")
print("ok", flush=True)
"""


def test_a_process_forked_with_the_hard_timer_armed_calls_rewards() -> None:
    """A fork-started worker (gymnasium's async vector env) inherits no armed hard timer: before
    the fork hooks it hung for ever in its first guarded call."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", FORK_WHILE_ARMED], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr
