"""The CARLA adapter.

Two kinds of tests. Without a server (they run everywhere, unmarked): option validation, the
one-message, bounded failure when nothing (or something that is not CARLA) answers at host:port,
the CLI's exit 2, the geometry behind the StateView, the reference policy and the task's
driving-terms reward program. With a server (marked ``carla``): skipped with the reason unless
a CARLA 0.9.16 server answers at CARLA_HOST:CARLA_PORT (default 127.0.0.1:2000).

No stand-in for CARLA is used anywhere: the sockets below are plain TCP services that are *not*
CARLA (a silent one, an HTTP-style one, a recorder), to show what the adapter does with them.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import MissingDependency, TaskError
from workbench.sims.carla import (
    ENV_ID,
    NO_GAP,
    VERSION_REQUEST,
    CarlaAdapter,
    Route,
    carla_profile,
    carla_reference,
    gap_ahead,
    parse_options,
    probe_server,
    signed_lateral,
    to_ego_frame,
    wrap_angle,
)
from workbench.spec import SimSpec
from workbench.state import State

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "carla" / "clg_town2.yaml"
TERMS = REPO / "tasks" / "carla" / "rewards" / "driving_terms.py"
ADAPTER = CarlaAdapter()

HOST = os.environ.get("CARLA_HOST", "127.0.0.1")
PORT = int(os.environ.get("CARLA_PORT", "2000"))


def _server_missing() -> str | None:
    try:
        probe_server(HOST, PORT, 2.0)
    except TaskError:
        return (f"no CARLA server at {HOST}:{PORT} (start CarlaUE4.sh -RenderOffScreen -carla-rpc-port={PORT}, "
                "or set CARLA_HOST/CARLA_PORT)")
    return None


SERVER_MISSING = _server_missing()


def live(fn: Callable[..., None]) -> Callable[..., None]:
    """A test that needs a CARLA server."""
    return pytest.mark.carla(pytest.mark.skipif(SERVER_MISSING is not None, reason=SERVER_MISSING or "")(fn))


def _spec(**kwargs: object) -> SimSpec:
    return SimSpec(name="carla", env_id=ENV_ID, kwargs=kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _TcpService:
    """A real TCP service on 127.0.0.1 that is not CARLA: ``reply`` (bytes or None = stay silent)
    is sent after the first bytes arrive; everything received is recorded."""

    def __init__(self, reply: bytes | None):
        self.reply, self.received = reply, b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            try:
                self.received += conn.recv(4096)
                if self.reply is not None:
                    conn.sendall(self.reply)
                    conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def service() -> Iterator[Callable[[bytes | None], _TcpService]]:
    made: list[_TcpService] = []

    def make(reply: bytes | None) -> _TcpService:
        made.append(_TcpService(reply))
        return made[-1]

    yield make
    for s in made:
        s.close()


# ----------------------------------------------------------------------------- no server needed


def test_no_server_fails_fast_with_one_message_naming_host_port_and_fix() -> None:
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(TaskError) as info:
        ADAPTER.make_env(_spec(port=port, timeout_s=2))
    assert time.monotonic() - start < 15
    err = info.value
    assert err.key == "sim.kwargs.host"
    message, fix = str(err).splitlines()  # the message, then the fix: nothing else
    assert f"no CARLA server answered at 127.0.0.1:{port} within 2s" in message
    assert f"CarlaUE4.sh -RenderOffScreen -carla-rpc-port={port}" in fix and "sim.kwargs.host/port" in fix


def test_silent_port_fails_in_bounded_time(service: Callable[[bytes | None], _TcpService]) -> None:
    silent = service(None)
    start = time.monotonic()
    with pytest.raises(TaskError, match=rf"no CARLA server answered at 127.0.0.1:{silent.port} within 1s "
                                        r"\(connected, but no reply\)"):
        ADAPTER.make_env(_spec(port=silent.port, timeout_s=1))
    assert time.monotonic() - start < 5


def test_a_service_that_is_not_carla_is_refused_without_crashing(
        service: Callable[[bytes | None], _TcpService]) -> None:
    """The carla 0.9.16 client aborts the Python process (std::bad_cast) when a non-msgpack reply
    comes back; the probe must stop before the client connects. In a subprocess, so a regression
    shows as a failed test, not a dead test run."""
    http = service(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
    code = ("from workbench.sims.carla import CarlaAdapter, ENV_ID\n"
            "from workbench.spec import SimSpec\n"
            "from workbench.errors import TaskError\n"
            "try:\n"
            "    CarlaAdapter().make_env(SimSpec(name='carla', env_id=ENV_ID, "
            f"kwargs={{'port': {http.port}, 'timeout_s': 2}}))\n"
            "except TaskError as e:\n"
            "    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert f"something at 127.0.0.1:{http.port} answered, but it is not a CARLA server" in proc.stdout
    assert "HTTP/1.1 400" in proc.stdout


def test_probe_sends_the_request_the_carla_client_sends(service: Callable[[bytes | None], _TcpService]) -> None:
    carla = pytest.importorskip("carla")
    recorder = service(None)
    client = carla.Client("127.0.0.1", recorder.port)
    client.set_timeout(1.0)
    with pytest.raises(RuntimeError, match="time-out"):
        client.get_server_version()
    deadline = time.monotonic() + 5
    while not recorder.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.received == VERSION_REQUEST


def test_cli_validate_without_server_exits_2_with_the_message() -> None:
    port = _free_port()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "validate", str(TASK),
                           "--set", f"sim.kwargs.port={port}", "--set", "sim.kwargs.timeout_s=2"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert time.monotonic() - start < 60
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("error: ") and ("sim.kwargs.host: no CARLA server answered at "
                                               f"127.0.0.1:{port}") in lines[0]
    assert lines[1].strip().startswith("fix: start one with `./CarlaUE4.sh -RenderOffScreen")


def test_missing_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "carla", None)  # what an environment without the client sees
    with pytest.raises(MissingDependency, match=r'pip install "rl-workbench\[carla\]"'):
        ADAPTER.make_env(_spec(port=_free_port()))


def test_unknown_kwarg_names_the_key_and_the_valid_ones() -> None:
    with pytest.raises(TaskError) as info:
        ADAPTER.make_env(_spec(twon="Town02"))
    assert info.value.key == "sim.kwargs.twon"
    assert "town" in info.value.hint and "fixed_delta_seconds" in info.value.hint
    with pytest.raises(TaskError, match="sim.max_episode_steps"):
        parse_options({"max_episode_steps": 100})


@pytest.mark.parametrize("kwargs,key,text", [
    ({"port": "two thousand"}, "sim.kwargs.port", "valid integer"),
    ({"fixed_delta_seconds": 0.5}, "sim.kwargs.fixed_delta_seconds", "less than or equal to 0.1"),
    ({"camera_mount": "roof"}, "sim.kwargs.camera_mount", "'chase', 'hood' or 'bev'"),
    ({"n_vehicles": -1}, "sim.kwargs.n_vehicles", "greater than or equal to 0"),
])
def test_bad_kwarg_values_name_the_key(kwargs: dict, key: str, text: str) -> None:
    with pytest.raises(TaskError) as info:
        parse_options(kwargs)
    assert info.value.key == key and text in info.value.message


def test_unknown_env_id_points_to_the_one_id() -> None:
    with pytest.raises(TaskError, match=ENV_ID):
        ADAPTER.make_env(SimSpec(name="carla", env_id="Town02-v0"))


def test_defaults_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARLA_HOST", "carla.example")
    monkeypatch.setenv("CARLA_PORT", "3000")
    opts = parse_options({})
    assert (opts.host, opts.port, opts.traffic_manager_port) == ("carla.example", 3000, 9000)
    assert parse_options({"port": 2000, "tm_port": 8123}).traffic_manager_port == 8123


# -- geometry (CARLA's frame is left-handed: x forward, y right, yaw turns +x towards +y)


def test_ego_frame_and_lateral_sign() -> None:
    origin = np.array([10.0, 5.0])
    # Heading +y (yaw 90 deg): a point further along +y is ahead, one at smaller x is on the right.
    np.testing.assert_allclose(to_ego_frame(np.array([10.0, 8.0]), origin, math.pi / 2), [3.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(to_ego_frame(np.array([7.0, 5.0]), origin, math.pi / 2), [0.0, 3.0], atol=1e-12)
    # Heading +x: +y is to the right.
    assert signed_lateral(np.array([0.0, 1.5]), np.zeros(2), 0.0) == pytest.approx(1.5)
    assert signed_lateral(np.array([0.0, -1.5]), np.zeros(2), 0.0) == pytest.approx(-1.5)


def _l_route() -> Route:
    """20 m along +x, then a right turn (+y) for 20 m, points every 1 m."""
    leg1 = [(x, 0.0, 0.0) for x in range(21)]
    leg2 = [(20.0, y, math.pi / 2) for y in range(1, 21)]
    pts = np.array(leg1 + leg2, dtype=float)
    return Route.from_points(pts[:, :2], pts[:, 2])


def test_route_progress_is_monotone_and_reaches_one() -> None:
    route = _l_route()
    assert route.length == pytest.approx(40.0)
    s, lateral = route.progress(np.array([5.3, 0.4]))
    assert s == pytest.approx(5.3) and lateral == pytest.approx(0.4)
    # Backing up loses at most one segment: the nearest point reached never moves back.
    s_back, _ = route.progress(np.array([1.0, 0.0]))
    assert s_back == pytest.approx(4.0) and route.index == 5
    # The window only looks 10 m ahead: jumping to the end is not taken as progress at once.
    s_far, _ = route.progress(np.array([20.0, 20.0]))
    assert s_far == pytest.approx(16.0)
    for y in range(0, 21):
        s, lateral = route.progress(np.array([20.5, float(y)]))
    assert s == pytest.approx(40.0) and lateral == pytest.approx(-0.5)  # left of a lane heading +y
    ahead = route.points_ahead(10.0, n=3, spacing=5.0)
    np.testing.assert_allclose(ahead, [[15.0, 0.0], [20.0, 0.0], [20.0, 5.0]])
    np.testing.assert_allclose(route.points_ahead(38.0, n=2, spacing=5.0), [[20.0, 20.0], [20.0, 20.0]])


def test_gap_ahead_counts_only_vehicles_ahead_in_the_lane() -> None:
    ego, others = np.zeros(2), np.array([[30.0, 0.5], [12.0, 4.0], [-8.0, 0.0], [50.0, -1.0]])
    lengths = np.full(4, 2.0)
    assert gap_ahead(ego, 0.0, 2.5, others, lengths, 1.75) == pytest.approx(30.0 - 2.5 - 2.0)
    assert gap_ahead(ego, math.pi, 2.5, others, lengths, 1.75) == pytest.approx(8.0 - 2.5 - 2.0)
    assert gap_ahead(ego, 0.0, 2.5, np.zeros((0, 2)), np.zeros(0), 1.75) == NO_GAP
    assert gap_ahead(ego, 0.0, 2.5, np.array([[300.0, 0.0]]), np.array([2.0]), 1.75) == NO_GAP


class _View:
    def __init__(self, **values: object):
        self.state_view = values


def test_reference_steers_towards_the_route_and_holds_speed() -> None:
    straight = np.array([[5.0 * k, 0.0] for k in range(1, 6)])
    bend_right = np.array([[5.0 * k, 0.4 * k * k] for k in range(1, 6)])
    go = carla_reference(_View(route_ahead=straight, speed=0.0))
    assert go[0] == pytest.approx(0.0) and go[1] > 0.9
    turn = carla_reference(_View(route_ahead=bend_right, speed=6.5))
    assert turn[0] > 0.05 and turn[1] == pytest.approx(0.0)  # CARLA's steer > 0 turns right
    assert carla_reference(_View(route_ahead=straight, speed=12.0))[1] < 0  # brakes when too fast


# -- profile and the task's reward terms


def _state(**overrides: float) -> State:
    values = {f.name: np.zeros(f.shape) for f in carla_profile().schema.fields}
    values.update({"speed": 22.0 / 3.6, "gap_ahead": NO_GAP, "on_road": 1.0, "lane_width": 3.5})
    values.update(overrides)
    return State(values)


def test_profile_shares_the_driving_field_names_and_judges_success() -> None:
    profile = carla_profile()
    shared = {"speed", "position", "heading", "lane_offset", "lane_heading_error", "lane_width", "collided",
              "on_road", "gap_ahead", "route_completion"}
    assert shared <= set(profile.schema.names)
    assert {"lane_invasions", "distance_to_route_end"} <= set(profile.schema.names)
    assert ADAPTER.env_ids() == [ENV_ID] and ADAPTER.profile(_spec()).env_id == ENV_ID
    text = profile.schema.describe()
    assert text.count(": np.ndarray") == len(profile.schema.fields)
    assert profile.success(_state(route_completion=0.95))
    assert not profile.success(_state(route_completion=0.95, collided=1.0))
    assert not profile.success(_state(route_completion=0.5))
    assert profile.success(_state(route_completion=0.5), threshold=0.4)
    assert profile.reference is carla_reference


def _terms() -> Callable[[State, np.ndarray], tuple[float, dict[str, float]]]:
    from reward_synthesis.safety.sandbox import load_program, normalize_output, static_check

    source = TERMS.read_text()
    assert static_check(source, str(TERMS)) == []
    fn = load_program(source, filename=str(TERMS))
    return lambda state, action: normalize_output(fn(state, action))


@pytest.mark.parametrize("overrides,expect", [
    ({}, {"speed": 1.0, "center": 1.0, "angle": 1.0, "collision": 0.0}),
    ({"speed": 10.0 / 3.6}, {"speed": 0.5}),
    ({"speed": 30.0 / 3.6}, {"speed": 0.5}),
    ({"speed": 50.0 / 3.6}, {"speed": 0.0}),
    ({"lane_offset": -1.5}, {"center": 0.5}),
    ({"lane_offset": 4.0}, {"center": 0.0}),
    ({"lane_heading_error": math.pi / 4}, {"angle": 0.5}),
    ({"lane_heading_error": -math.pi}, {"angle": 0.0}),
    ({"collided": 1.0}, {"collision": -1.0}),
    ({"speed": -2.0}, {"speed": 0.0}),
])
def test_driving_terms_components(overrides: dict, expect: dict) -> None:
    total, parts = _terms()(_state(**overrides), np.zeros(2))
    assert set(parts) == {"speed", "center", "angle", "collision"}
    for name, value in expect.items():
        assert parts[name] == pytest.approx(value), name
    assert total == pytest.approx(parts["speed"] * parts["center"] * parts["angle"] + parts["collision"])


def test_driving_terms_prefer_good_driving() -> None:
    terms = _terms()
    good, _ = terms(_state(), np.zeros(2))
    for bad in ({"collided": 1.0}, {"lane_offset": 2.0}, {"speed": 0.5}, {"lane_heading_error": 0.8}):
        assert terms(_state(**bad), np.zeros(2))[0] < good, bad


# ----------------------------------------------------------------------------- live (needs a server)


@pytest.fixture
def env() -> Iterator:
    e = ADAPTER.make_env(SimSpec(name="carla", env_id=ENV_ID, max_episode_steps=400,
                                 kwargs={"host": HOST, "port": PORT, "n_vehicles": 5, "camera_width": 96,
                                         "camera_height": 64, "route_length_m": 60}),
                         render_mode="rgb_array")
    try:
        yield e
    finally:
        e.close()


@live
def test_live_state_view_matches_the_actor(env) -> None:
    profile = carla_profile()
    env.reset(seed=3)
    for _ in range(20):
        env.step(np.array([0.0, 0.6]))
    state = profile.schema.read(env)
    ego = env.ego
    t, v = ego.get_transform(), ego.get_velocity()
    assert float(state.speed) == pytest.approx(math.hypot(v.x, v.y), rel=0.05)  # forward, little slip
    assert float(state.speed) > 0.5
    np.testing.assert_allclose(state.position, [t.location.x, t.location.y], atol=1e-6)
    assert abs(float(wrap_angle(float(state.heading) - math.radians(t.rotation.yaw)))) < 1e-6
    lane = env.world.get_map().get_waypoint(t.location)
    lane_xy = np.array([lane.transform.location.x, lane.transform.location.y])
    assert abs(float(state.lane_offset)) == pytest.approx(np.linalg.norm(state.position - lane_xy), abs=0.05)
    assert float(state.lane_width) == pytest.approx(lane.lane_width)
    assert abs(float(state.lane_offset)) < 0.5 * lane.lane_width
    assert 0.0 < float(state.route_completion) < 1.0
    assert float(state.distance_to_route_end) == pytest.approx(60.0 * (1 - float(state.route_completion)), abs=3.0)
    for field in profile.schema.fields:
        assert getattr(state, field.name).shape == field.shape
        assert np.all(np.isfinite(getattr(state, field.name))), field.name


@live
def test_live_camera_frames_match_the_tick(env) -> None:
    obs, info = env.reset(seed=0)
    first = env.render()
    assert first.shape == (64, 96, 3) and first.dtype == np.uint8 and first.std() > 0
    _, _, _, _, info = env.step(np.array([0.0, 0.5]))
    assert info["frame"] == env.world.get_snapshot().frame
    assert env.render().shape == (64, 96, 3)


@live
def test_live_collision_ends_the_episode(env) -> None:
    env.reset(seed=1)
    ahead = env.world.get_map().get_waypoint(env.ego.get_location()).next(12.0)[0].transform
    ahead.location.z += 0.5
    blocker = env.world.try_spawn_actor(env.world.get_blueprint_library().find("vehicle.tesla.model3"), ahead)
    assert blocker is not None
    try:
        for _ in range(200):
            _, _, terminated, truncated, info = env.step(np.array([0.0, 1.0]))
            if terminated or truncated:
                break
        assert terminated and info["termination"] == "collision" and info["collided"] == 1.0
        assert not carla_profile().success(carla_profile().schema.read(env))
    finally:
        blocker.destroy()


@live
def test_live_reset_and_close_leave_no_actors_and_restore_settings() -> None:
    carla = pytest.importorskip("carla")
    client = carla.Client(HOST, PORT)
    client.set_timeout(20.0)
    world = client.get_world()
    before_settings = world.get_settings().synchronous_mode
    before = {a.id for a in world.get_actors()}
    e = ADAPTER.make_env(_spec(host=HOST, port=PORT, n_vehicles=5, n_walkers=3, camera_width=64, camera_height=64))
    try:
        e.reset(seed=0)
        during = {a.id for a in e.world.get_actors()} - before
        assert len(during) >= 1 + 3 + 5  # ego, three sensors, traffic
        e.reset(seed=1)  # the first episode's actors are gone
        assert not (during & {a.id for a in e.world.get_actors()})
    finally:
        e.close()
    world = client.get_world()
    world.wait_for_tick(10.0)  # asynchronous again: the server ticks on its own
    assert {a.id for a in world.get_actors()} <= before
    assert world.get_settings().synchronous_mode == before_settings


@live
def test_live_seeded_reset_repeats_the_start_and_the_reference_drives(env) -> None:
    env.reset(seed=7)
    start = env.state_view["position"].copy()
    env.reset(seed=7)
    np.testing.assert_allclose(env.state_view["position"], start, atol=0.2)
    for _ in range(300):
        _, _, terminated, truncated, info = env.step(carla_reference(env))
        if terminated or truncated:
            break
    assert env.state_view["route_completion"] > 0.5, info
