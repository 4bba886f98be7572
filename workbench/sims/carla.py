"""CARLA adapter: route driving in a user's CARLA 0.9.16 server, with traffic, a camera and a StateView.

One env id, ``CarlaRoute-v0``; the town and everything else come from ``sim.kwargs`` (see
:class:`CarlaOptions`). Each episode spawns an ego vehicle at a map spawn point, lays a route of
``route_length_m`` along the lane ahead (``Waypoint.next``, branches picked by the episode's RNG),
spawns Traffic Manager traffic, and drives in synchronous mode with a fixed time step. It ends
on a collision (terminated), on leaving the route (terminated), on reaching the route's end
(terminated, success) or at ``sim.max_episode_steps`` (truncated).

The server is the user's (``./CarlaUE4.sh -RenderOffScreen -carla-rpc-port=2000``); only the
``carla`` client is a dependency (``pip install "rl-workbench[carla]"``).

Written against the carla 0.9.16 Python API (its ``libcarla.pyi`` stubs and documentation) on
a machine where no CARLA server can run: the live path (everything after the connection check)
has NOT been run here. What is verified here: option validation, the bounded and clean failure
when no server answers, the geometry helpers and the StateView declaration. The live tests in
``tests/sims/test_carla.py`` run wherever CARLA_HOST/CARLA_PORT reach a server.

Before the carla client touches ``host:port``, :func:`probe_server` opens a plain socket and
sends the same msgpack-rpc ``version`` request the client sends. Two reasons, both measured with
the 0.9.16 client: a refused or silent port then fails at once with our message, and a port where
some *other* service answers (e.g. an HTTP proxy) is refused cleanly, where the carla client
itself aborts the whole Python process (``std::bad_cast`` from msgpack, uncatchable).
"""

from __future__ import annotations

import math
import os
import queue
import socket
import threading
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import Field as PField

from workbench.errors import MissingDependency, TaskError, WorkbenchError
from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.spec import SimSpec, pydantic_error_to_task_error
from workbench.state import Field, StateSchema

__all__ = [
    "ENV_ID", "CarlaAdapter", "CarlaDrivingEnv", "CarlaOptions", "CarlaServerLost",
    "carla_profile", "parse_options", "probe_server",
]

ENV_ID = "CarlaRoute-v0"
DEFAULT_MAX_EPISODE_STEPS = 1000          # 50 s of driving at the default 0.05 s step
NO_GAP = 100.0                            # m; gap_ahead when no vehicle is ahead in the lane
ROUTE_AHEAD_POINTS = 5                    # route points in the observation and the StateView
ROUTE_AHEAD_SPACING_M = 5.0
SERVER_HINT = ("start one with `./CarlaUE4.sh -RenderOffScreen -carla-rpc-port={port}`, "
               "or point sim.kwargs.host/port (or CARLA_HOST/CARLA_PORT) at yours")

# The msgpack-rpc request the carla 0.9.16 client sends first: [0, msgid=1, "version", [[false]]]
# (its args are one Metadata{asynchronous=false}). Captured from the real client; a test
# compares them so a client that changes its wire format is noticed.
VERSION_REQUEST = b"\x94\x00\x01\xa7version\x91\x91\xc2"
_RESPONSE_PREFIX = b"\x94\x01"  # a msgpack-rpc response: a 4-array starting with type 1


# ----------------------------------------------------------------------------- options


def _env_default_host() -> str:
    return os.environ.get("CARLA_HOST", "127.0.0.1")


def _env_default_port() -> int:
    raw = os.environ.get("CARLA_PORT", "2000")
    try:
        return int(raw)
    except ValueError:
        raise TaskError(f"CARLA_PORT={raw!r} is not a port number", key="sim.kwargs.port",
                        hint="set CARLA_PORT to the server's RPC port (default 2000), or sim.kwargs.port") from None


class CarlaOptions(BaseModel):
    """``sim.kwargs`` of a CARLA task. Lengths in metres, times in seconds, angles in degrees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = PField(default_factory=_env_default_host, description="server address [CARLA_HOST or 127.0.0.1]")
    port: int = PField(default_factory=_env_default_port, ge=1, le=65535,
                       description="server RPC port [CARLA_PORT or 2000]")
    tm_port: int | None = PField(None, ge=1, le=65535, description="Traffic Manager port [port + 6000]")
    timeout_s: float = PField(10.0, gt=0, description="connection check and per-call timeout")
    load_timeout_s: float = PField(120.0, gt=0, description="timeout for loading a town")
    town: str = PField("Town02", min_length=1, description="map to load (only if another is loaded)")
    fixed_delta_seconds: float = PField(0.05, gt=0, le=0.1,
                                        description="simulated seconds per step (<= 0.1 for stable physics)")
    ego_blueprint: str = PField("vehicle.tesla.model3", description="blueprint id of the ego vehicle")
    spawn_point: int | None = PField(None, ge=0, description="index into the map's spawn points [random per episode]")
    n_vehicles: int = PField(20, ge=0, le=500, description="Traffic Manager vehicles")
    n_walkers: int = PField(0, ge=0, le=500, description="AI-controlled pedestrians")
    camera_width: int = PField(224, ge=16, le=4096, description="camera image width, pixels")
    camera_height: int = PField(224, ge=16, le=4096, description="camera image height, pixels")
    camera_fov: float = PField(90.0, gt=0, lt=180, description="camera horizontal field of view, degrees")
    camera_mount: Literal["chase", "hood", "bev"] = PField(
        "chase", description="chase: behind and above the ego; hood: driver's view; bev: top-down")
    observation: Literal["state", "rgb"] = PField("state", description="state vector or the camera image")
    route_length_m: float = PField(200.0, gt=0, le=5000, description="route length from the spawn point")
    route_resolution_m: float = PField(2.0, gt=0, le=10, description="spacing of the route's waypoints")
    max_route_deviation_m: float | None = PField(
        3.0, gt=0, description="end the episode this far off the route's centre line [null: never]")
    seed: int | None = PField(None, ge=0, description="seed of the first reset when reset() gets none")

    @property
    def traffic_manager_port(self) -> int:
        return self.tm_port if self.tm_port is not None else self.port + 6000


def parse_options(kwargs: Mapping[str, Any]) -> CarlaOptions:
    """``sim.kwargs`` -> :class:`CarlaOptions`, or a TaskError that names the key and the valid ones."""
    valid = list(CarlaOptions.model_fields)
    for key in kwargs:
        if key not in valid:
            hint = ("set the episode length as sim.max_episode_steps" if key == "max_episode_steps"
                    else f"valid keys: {', '.join(valid)}")
            raise TaskError(f"unknown key {key!r} for the CARLA simulator", key=f"sim.kwargs.{key}", hint=hint)
    try:
        return CarlaOptions.model_validate(dict(kwargs))
    except ValidationError as err:
        first = pydantic_error_to_task_error(err, file="<task>", prefix="sim.kwargs.", model=CarlaOptions)
        name = str(err.errors()[0]["loc"][0])
        about = CarlaOptions.model_fields[name].description or f"see {CarlaOptions.__module__}.CarlaOptions"
        raise TaskError(first.message, key=first.key, hint=f"{name}: {about}") from None


# ----------------------------------------------------------------------------- connection


class CarlaServerLost(WorkbenchError):
    """The server stopped answering in the middle of an episode."""


def _no_server(host: str, port: int, timeout_s: float, why: str) -> TaskError:
    return TaskError(f"no CARLA server answered at {host}:{port} within {timeout_s:g}s ({why})",
                     key="sim.kwargs.host", hint=SERVER_HINT.format(port=port))


def probe_server(host: str, port: int, timeout_s: float) -> None:
    """Raise a one-message TaskError unless a msgpack-rpc server (CARLA) answers at ``host:port``.

    Takes at most about ``2 * timeout_s`` (connect, then wait for the reply).
    """
    deadline = time.monotonic() + timeout_s
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except socket.gaierror as err:
        raise TaskError(f"cannot resolve CARLA host {host!r}: {err.strerror}", key="sim.kwargs.host",
                        hint=SERVER_HINT.format(port=port)) from None
    except ConnectionRefusedError:
        raise _no_server(host, port, timeout_s, "connection refused") from None
    except TimeoutError:
        raise _no_server(host, port, timeout_s, "connection timed out") from None
    except OSError as err:
        raise _no_server(host, port, timeout_s, err.strerror or type(err).__name__) from None
    with sock:
        try:
            sock.settimeout(max(deadline - time.monotonic(), timeout_s / 2))
            sock.sendall(VERSION_REQUEST)
            reply = sock.recv(64)
        except TimeoutError:
            raise _no_server(host, port, timeout_s, "connected, but no reply") from None
        except OSError as err:
            raise _no_server(host, port, timeout_s, err.strerror or type(err).__name__) from None
    if not reply:
        raise _no_server(host, port, timeout_s, "the connection was closed without a reply")
    if not reply.startswith(_RESPONSE_PREFIX):
        shown = reply[:24].decode("ascii", "replace").splitlines()[0] if reply[:1].isascii() else reply[:8].hex()
        raise TaskError(f"something at {host}:{port} answered, but it is not a CARLA server (it replied {shown!r})",
                        key="sim.kwargs.port",
                        hint="use the CARLA server's RPC port (-carla-rpc-port, default 2000); "
                             + SERVER_HINT.format(port=port))


def _import_carla() -> Any:
    try:
        import carla
    except ImportError:
        raise MissingDependency("the CARLA simulator adapter", "carla", "carla") from None
    return carla


def _is_timeout(err: BaseException) -> bool:
    return isinstance(err, RuntimeError) and "time-out" in str(err)


@contextmanager
def _server_call(opts: CarlaOptions, what: str) -> Iterator[None]:
    """Turns the carla client's time-out in the middle of an episode into one clear message."""
    try:
        yield
    except RuntimeError as err:
        if not _is_timeout(err):
            raise
        raise CarlaServerLost(f"the CARLA server at {opts.host}:{opts.port} stopped answering during {what} "
                              f"({err})\n  fix: check that it is still running; restart it and resume the run "
                              "(`workbench run --resume RUN_DIR`)") from None


# ----------------------------------------------------------------------------- geometry
# CARLA's world frame is Unreal's: left-handed, x forward, y right, z up; yaw in degrees turns
# +x towards +y. So at yaw 0 the right-hand vector is +y, and "right" below means that.


def wrap_angle(angle: float | np.ndarray) -> Any:
    """Into [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def to_ego_frame(points: np.ndarray, origin: np.ndarray, yaw: float) -> np.ndarray:
    """World xy points -> (forward, right) metres relative to ``origin`` heading ``yaw`` rad."""
    d = np.asarray(points, dtype=np.float64) - origin
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c], axis=-1)


def signed_lateral(point: np.ndarray, centre: np.ndarray, yaw: float) -> float:
    """Distance of ``point`` from the line through ``centre`` heading ``yaw``; positive = right of it."""
    return float(to_ego_frame(point, centre, yaw)[1])


@dataclass
class Route:
    """A polyline of lane-centre points with their yaw (rad) and arc length (m) from the start."""

    xy: np.ndarray
    yaw: np.ndarray
    s: np.ndarray
    index: int = 0  # nearest point reached so far; only moves forward

    @classmethod
    def from_points(cls, xy: np.ndarray, yaw: np.ndarray) -> Route:
        xy = np.asarray(xy, dtype=np.float64)
        steps = np.linalg.norm(np.diff(xy, axis=0), axis=1) if len(xy) > 1 else np.zeros(0)
        return cls(xy, np.asarray(yaw, dtype=np.float64), np.concatenate([[0.0], np.cumsum(steps)]))

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def progress(self, pos: np.ndarray, lookahead_m: float = 10.0) -> tuple[float, float]:
        """Advance along the route to ``pos``: ``(arc length reached, lateral offset)``.

        Only points up to ``lookahead_m`` ahead of the last one reached are candidates, so a
        route that passes near itself is not skipped ahead. The arc length is the nearest point's
        plus the along-track offset from it (at most one segment either way): the route's end
        counts as reached only once the ego is at its last point.
        """
        end = int(np.searchsorted(self.s, self.s[self.index] + lookahead_m, side="right"))
        window = self.xy[self.index:max(end, self.index + 1)]
        j = self.index + int(np.argmin(np.linalg.norm(window - pos, axis=1)))
        self.index = j
        along, lateral = to_ego_frame(pos, self.xy[j], float(self.yaw[j]))
        # Along-track offset only within the neighbouring segments: far off the route, the
        # projection on one point's tangent says nothing about progress.
        behind = self.s[j] - self.s[j - 1] if j > 0 else 0.0
        ahead = self.s[j + 1] - self.s[j] if j + 1 < len(self.s) else 0.0
        return float(np.clip(self.s[j] + np.clip(along, -behind, ahead), 0.0, self.length)), float(lateral)

    def points_ahead(self, s_now: float, n: int = ROUTE_AHEAD_POINTS,
                     spacing: float = ROUTE_AHEAD_SPACING_M) -> np.ndarray:
        """World xy of the route at ``s_now + spacing * (1..n)`` (held at the end point)."""
        targets = np.minimum(s_now + spacing * np.arange(1, n + 1), self.length)
        return np.stack([np.interp(targets, self.s, self.xy[:, 0]), np.interp(targets, self.s, self.xy[:, 1])], axis=1)


def gap_ahead(ego_xy: np.ndarray, ego_yaw: float, ego_half_length: float, others: np.ndarray,
              other_half_lengths: np.ndarray, lane_half_width: float) -> float:
    """Bumper-to-bumper distance to the nearest vehicle ahead within the lane's width, in the ego
    frame (a straight-line approximation on curves); :data:`NO_GAP` when there is none."""
    if len(others) == 0:
        return NO_GAP
    rel = to_ego_frame(others, ego_xy, ego_yaw)
    ahead = (rel[:, 0] > 0) & (np.abs(rel[:, 1]) < lane_half_width)
    if not ahead.any():
        return NO_GAP
    gaps = rel[ahead, 0] - ego_half_length - other_half_lengths[ahead]
    return float(np.clip(gaps.min(), 0.0, NO_GAP))


# ----------------------------------------------------------------------------- the live session

_MOUNTS = {  # (x, y, z) m relative to the vehicle, (pitch, yaw, roll) deg
    "chase": ((-5.5, 0.0, 2.8), (-15.0, 0.0, 0.0)),
    "hood": ((1.5, 0.0, 1.6), (0.0, 0.0, 0.0)),
    "bev": ((0.0, 0.0, 20.0), (-90.0, 0.0, 0.0)),
}


class _Inbox:
    """Where sensor callbacks (carla's own threads) leave their data; holds no env reference."""

    def __init__(self) -> None:
        self.images: queue.Queue[Any] = queue.Queue()
        self.lock = threading.Lock()
        self.collisions: list[tuple[int, int]] = []   # (frame, other actor id)
        self.invasions = 0

    def on_image(self, image: Any) -> None:
        self.images.put(image)

    def on_collision(self, event: Any) -> None:
        with self.lock:
            self.collisions.append((int(event.frame), int(event.other_actor.id)))

    def on_invasion(self, event: Any) -> None:
        with self.lock:
            self.invasions += 1

    def clear(self) -> None:
        with self.lock:
            self.collisions.clear()
            self.invasions = 0
        while True:
            try:
                self.images.get_nowait()
            except queue.Empty:
                return


@dataclass
class _Session:
    """One connection to a server: the world in synchronous mode and the actors this env spawned.

    Kept apart from the env so a ``weakref.finalize`` can restore the server (asynchronous mode,
    no leftover actors) even when the env is never closed: a server left in synchronous mode
    with nobody ticking it freezes for every other client.
    """

    carla: Any
    client: Any
    world: Any
    map: Any
    tm: Any
    original_settings: Any
    sensors: list[Any] = field(default_factory=list)
    controllers: list[Any] = field(default_factory=list)
    actor_ids: list[int] = field(default_factory=list)  # vehicles and walkers, destroyed in one batch
    closed: bool = False

    def destroy_actors(self) -> None:
        carla = self.carla
        for sensor in self.sensors:
            if sensor.is_alive:
                sensor.stop()  # stop the stream before the actor goes, or callbacks race the destroy
        for controller in self.controllers:
            if controller.is_alive:
                controller.stop()
        ids = [a.id for a in self.sensors] + [c.id for c in self.controllers] + self.actor_ids
        if ids:
            self.client.apply_batch_sync([carla.command.DestroyActor(i) for i in ids], True)
        self.sensors, self.controllers, self.actor_ids = [], [], []

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.destroy_actors()
        finally:
            self.tm.set_synchronous_mode(False)
            self.world.apply_settings(self.original_settings)


def _close_session(session: _Session, where: str) -> None:
    """The finalizer: also runs at interpreter exit, so it warns instead of raising."""
    try:
        session.close()
    except RuntimeError as err:  # the server may be gone already: nothing left to restore
        warnings.warn(f"CARLA cleanup at {where} failed: {err}", stacklevel=2)


def _connect(opts: CarlaOptions) -> _Session:
    carla = _import_carla()
    probe_server(opts.host, opts.port, opts.timeout_s)
    where = f"{opts.host}:{opts.port}"
    try:
        client = carla.Client(opts.host, opts.port)
        client.set_timeout(opts.timeout_s)
        server, mine = client.get_server_version(), client.get_client_version()
        if server.split("-")[0] != mine.split("-")[0]:
            warnings.warn(f"CARLA server {where} runs {server}, this client is {mine}; "
                          "the API may not match", stacklevel=3)
        available = {m.rsplit("/", 1)[-1]: m for m in client.get_available_maps()}
        if opts.town not in available:
            raise TaskError(f"the CARLA server at {where} has no town {opts.town!r}", key="sim.kwargs.town",
                            hint=f"pick one of: {', '.join(sorted(available))}")
        world = client.get_world()
        town_map = world.get_map()  # downloads and parses the OpenDRIVE map: once per connection
        if town_map.name.rsplit("/", 1)[-1] != opts.town:
            client.set_timeout(opts.load_timeout_s)  # loading a town takes tens of seconds
            world = client.load_world(opts.town)
            client.set_timeout(opts.timeout_s)
            town_map = world.get_map()
        blueprints = world.get_blueprint_library()
        if len(blueprints.filter(opts.ego_blueprint)) == 0:
            raise TaskError(f"no vehicle blueprint {opts.ego_blueprint!r} on the server at {where}",
                            key="sim.kwargs.ego_blueprint", hint="use a blueprint id like vehicle.tesla.model3")
        tm = client.get_trafficmanager(opts.traffic_manager_port)
        session = _Session(carla, client, world, town_map, tm, world.get_settings())
        settings = world.get_settings()
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = opts.fixed_delta_seconds
        try:
            world.apply_settings(settings)
            tm.set_synchronous_mode(True)  # the TM must tick with the world, or traffic stalls
            tm.set_global_distance_to_leading_vehicle(2.5)
            tm.set_hybrid_physics_mode(True)  # physics only near the ego: cheaper traffic
            tm.set_hybrid_physics_radius(50.0)
        except BaseException:
            _close_session(session, where)  # never leave the server in synchronous mode
            raise
        return session
    except RuntimeError as err:
        if _is_timeout(err):
            raise _no_server(opts.host, opts.port, opts.timeout_s, "the carla client timed out") from None
        raise TaskError(f"the CARLA server at {where} refused the setup: {err}", key="sim.kwargs",
                        hint="check the server log; restart it if it is stuck") from None


# ----------------------------------------------------------------------------- the env


class CarlaDrivingEnv(gym.Env):
    """Drive a route in CARLA. See the module docstring; options are :class:`CarlaOptions`.

    ## Action space
    ``Box(-1, 1, (2,), float32)``: ``[steer, throttle_brake]``; ``throttle_brake > 0`` is throttle,
    ``< 0`` brake.

    ## Observation space
    ``observation: state`` (default): ``Box(-inf, inf, (15,), float32)`` =
    ``[speed m/s, lane_offset m, lane_heading_error rad, last steer, last throttle_brake,
    route_ahead (5 x (forward, right) m, ego frame)]``.
    ``observation: rgb``: the camera image, ``Box(0, 255, (H, W, 3), uint8)``.

    ``render()`` (``render_mode="rgb_array"``) returns the latest camera frame, the one taken on
    the last tick; frames are matched to ticks by frame id.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, options: CarlaOptions | None = None, *, max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
                 render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise TaskError(f"render mode {render_mode!r} is not supported by CARLA", key="sim",
                            hint="use render_mode='rgb_array' (the camera frame)")
        self.options = opts = options or CarlaOptions()
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self.metadata = {**self.metadata, "render_fps": max(1, round(1 / opts.fixed_delta_seconds))}
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        if opts.observation == "rgb":
            self.observation_space = gym.spaces.Box(0, 255, (opts.camera_height, opts.camera_width, 3), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (5 + 2 * ROUTE_AHEAD_POINTS,), np.float32)
        self._session = _connect(opts)  # fails here, before anything else is built, if no server
        self._finalizer = weakref.finalize(self, _close_session, self._session, f"{opts.host}:{opts.port}")
        self._inbox = _Inbox()
        self._ego: Any = None
        self._ego_half_length = 2.4
        self._traffic: list[Any] = []
        self._traffic_half_lengths = np.zeros(0)
        self._route: Route | None = None
        self._frame: np.ndarray | None = None
        self._frame_id = -1
        self._steps = 0
        self._last_action = np.zeros(2, dtype=np.float64)
        self._view: dict[str, Any] = {}
        self._route_s = 0.0        # arc length reached along the route, m
        self._route_lateral = 0.0  # signed distance from the route's centre line, m
        self._progress_m = 0.0     # route metres gained by the last step
        self._seeded = False

    # -- gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is None and not self._seeded and self.options.seed is not None:
            seed = self.options.seed
        super().reset(seed=seed)
        self._seeded = True
        with _server_call(self.options, "reset"):
            self._session.destroy_actors()
            self._inbox.clear()
            self._spawn_episode()
            for _ in range(5):  # let the ego drop onto the road (spawn points sit above it)
                self._ego.apply_control(self._session.carla.VehicleControl(brake=1.0))
                self._tick()
            self._inbox.clear()  # nothing that happened while settling counts
            self._tick()
        self._steps = 0
        self._last_action[:] = 0.0
        self._route_s = 0.0
        self._measure()
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._ego is None:
            raise RuntimeError("call reset() before step()")
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        steer, pedal = float(a[0]), float(a[1])
        control = self._session.carla.VehicleControl(throttle=max(pedal, 0.0), steer=steer, brake=max(-pedal, 0.0))
        with _server_call(self.options, "step"):
            self._ego.apply_control(control)
            self._tick()
        self._steps += 1
        self._last_action[:] = a
        view = self._measure()
        collided = bool(view["collided"])
        completed = view["route_completion"] >= 1.0
        off_route = (self.options.max_route_deviation_m is not None
                     and abs(self._route_lateral) > self.options.max_route_deviation_m)
        terminated = collided or completed or off_route
        truncated = not terminated and self._steps >= self.max_episode_steps
        # The task's reward is the reward program's; this one is route progress in metres,
        # minus 1 on a collision, so the env is usable on its own reward too.
        reward = self._progress_m - (1.0 if collided else 0.0)
        info = self._info()
        info["termination"] = ("collision" if collided else "route_completed" if completed
                               else "off_route" if off_route else "time_limit" if truncated else None)
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        if getattr(self, "_finalizer", None) is not None:
            self._finalizer()  # restores the server once; later calls do nothing
        self._ego = None

    # -- public read-outs

    @property
    def state_view(self) -> Mapping[str, Any]:
        """The StateView values of the last tick (what the StateSchema reader returns)."""
        return self._view

    @property
    def camera_frame(self) -> np.ndarray | None:
        """The camera frame of the last tick, ``(H, W, 3)`` uint8, whatever the render mode."""
        return self._frame

    @property
    def world(self) -> Any:
        return self._session.world

    @property
    def ego(self) -> Any:
        return self._ego

    # -- internals

    def _spawn_episode(self) -> None:
        s, carla, rng, opts = self._session, self._session.carla, self.np_random, self.options
        blueprints = s.world.get_blueprint_library()
        spawn_points = s.map.get_spawn_points()
        if not spawn_points:
            raise TaskError(f"town {opts.town} has no spawn points", key="sim.kwargs.town")
        if opts.spawn_point is not None and opts.spawn_point >= len(spawn_points):
            raise TaskError(f"spawn_point {opts.spawn_point} is out of range: {opts.town} has "
                            f"{len(spawn_points)} spawn points", key="sim.kwargs.spawn_point",
                            hint=f"use 0..{len(spawn_points) - 1}, or leave it out for a random one")
        order = [opts.spawn_point] if opts.spawn_point is not None else list(rng.permutation(len(spawn_points)))

        ego_bp = blueprints.filter(opts.ego_blueprint)[0]
        ego_bp.set_attribute("role_name", "hero")  # the TM's hybrid physics centres on the hero
        ego, start = None, None
        for index in order[:20]:
            ego = s.world.try_spawn_actor(ego_bp, spawn_points[index])
            if ego is not None:
                start = spawn_points[index]
                break
        if ego is None:
            raise CarlaServerLost(f"could not spawn the ego vehicle at {opts.host}:{opts.port}: "
                                  "every spawn point tried was occupied\n  fix: restart the server "
                                  "or remove other clients' actors")
        s.actor_ids.append(ego.id)
        self._ego = ego
        self._ego_half_length = float(ego.bounding_box.extent.x)
        self._route = self._build_route(start)

        # Sensors: frames and events go to the inbox; the env reads them after each tick.
        inbox = self._inbox
        cam_bp = blueprints.find("sensor.camera.rgb")
        cam_bp.set_attribute("image_size_x", str(opts.camera_width))
        cam_bp.set_attribute("image_size_y", str(opts.camera_height))
        cam_bp.set_attribute("fov", str(opts.camera_fov))
        (x, y, z), (pitch, yaw, roll) = _MOUNTS[opts.camera_mount]
        mount = carla.Transform(carla.Location(x=x, y=y, z=z), carla.Rotation(pitch=pitch, yaw=yaw, roll=roll))
        for bp_id, transform, callback in (
            ("sensor.camera.rgb", mount, inbox.on_image),
            ("sensor.other.collision", carla.Transform(), inbox.on_collision),
            ("sensor.other.lane_invasion", carla.Transform(), inbox.on_invasion),
        ):
            bp = cam_bp if bp_id == "sensor.camera.rgb" else blueprints.find(bp_id)
            sensor = s.world.spawn_actor(bp, transform, attach_to=ego)
            s.sensors.append(sensor)
            sensor.listen(callback)

        s.tm.set_random_device_seed(int(rng.integers(2**31 - 1)))
        self._spawn_traffic([sp for sp in spawn_points if sp.location.distance(start.location) > 10.0])
        if opts.n_walkers:
            self._spawn_walkers()

    def _build_route(self, start: Any) -> Route:
        carla, opts = self._session.carla, self.options
        wp = self._session.map.get_waypoint(start.location, project_to_road=True, lane_type=carla.LaneType.Driving)
        points = [wp]
        for _ in range(int(math.ceil(opts.route_length_m / opts.route_resolution_m))):
            nxt = wp.next(opts.route_resolution_m)
            if not nxt:  # a dead end: the route is shorter than asked
                break
            wp = nxt[int(self.np_random.integers(len(nxt)))]  # at a junction, a seeded choice of branch
            points.append(wp)
        if len(points) < 2:
            raise CarlaServerLost(f"no lane ahead of the ego's spawn point in {opts.town}\n"
                                  "  fix: pick another sim.kwargs.spawn_point")
        xy = np.array([[p.transform.location.x, p.transform.location.y] for p in points])
        yaw = np.radians([p.transform.rotation.yaw for p in points])
        return Route.from_points(xy, yaw)

    def _spawn_traffic(self, spawn_points: list[Any]) -> None:
        s, carla, opts = self._session, self._session.carla, self.options
        self._traffic, self._traffic_half_lengths = [], np.zeros(0)
        n = min(opts.n_vehicles, len(spawn_points))
        if n == 0:
            return
        cars = [bp for bp in s.world.get_blueprint_library().filter("vehicle.*")
                if not bp.has_attribute("number_of_wheels") or bp.get_attribute("number_of_wheels").as_int() == 4]
        rng, port = self.np_random, opts.traffic_manager_port
        batch = []
        for i in rng.choice(len(spawn_points), size=n, replace=False):
            bp = cars[int(rng.integers(len(cars)))]
            if bp.has_attribute("color"):
                colors = bp.get_attribute("color").recommended_values
                bp.set_attribute("color", colors[int(rng.integers(len(colors)))])
            bp.set_attribute("role_name", "autopilot")
            batch.append(carla.command.SpawnActor(bp, spawn_points[int(i)])
                         .then(carla.command.SetAutopilot(carla.command.FutureActor, True, port)))
        ids = [r.actor_id for r in s.client.apply_batch_sync(batch, True) if not r.error]
        s.actor_ids.extend(ids)
        self._traffic = list(s.world.get_actors(ids)) if ids else []
        self._traffic_half_lengths = np.array([a.bounding_box.extent.x for a in self._traffic], dtype=np.float64)

    def _spawn_walkers(self) -> None:
        s, carla, opts, rng = self._session, self._session.carla, self.options, self.np_random
        walker_bps = s.world.get_blueprint_library().filter("walker.pedestrian.*")
        batch, speeds = [], []
        for _ in range(opts.n_walkers):
            location = s.world.get_random_location_from_navigation()
            if location is None:
                continue
            bp = walker_bps[int(rng.integers(len(walker_bps)))]
            if bp.has_attribute("is_invincible"):
                bp.set_attribute("is_invincible", "false")
            walking = bp.get_attribute("speed").recommended_values[1] if bp.has_attribute("speed") else "1.4"
            speeds.append(float(walking))
            batch.append(carla.command.SpawnActor(bp, carla.Transform(location)))
        spawned = [(r.actor_id, v) for r, v in zip(s.client.apply_batch_sync(batch, True), speeds) if not r.error]
        s.actor_ids.extend(i for i, _ in spawned)
        controller_bp = s.world.get_blueprint_library().find("controller.ai.walker")
        responses = s.client.apply_batch_sync(
            [carla.command.SpawnActor(controller_bp, carla.Transform(), i) for i, _ in spawned], True)
        pairs = [(r.actor_id, v) for r, (_, v) in zip(responses, spawned) if not r.error]
        self._tick()  # controllers need one tick before they take orders
        for controller_id, speed in pairs:
            controller = s.world.get_actor(controller_id)
            s.controllers.append(controller)
            controller.start()
            controller.go_to_location(s.world.get_random_location_from_navigation())
            controller.set_max_speed(speed)

    def _tick(self) -> None:
        """Advance one fixed step and wait for the camera frame of exactly that tick."""
        frame = self._session.world.tick(self.options.timeout_s)
        deadline = time.monotonic() + self.options.timeout_s
        while True:
            try:
                image = self._inbox.images.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise CarlaServerLost(f"no camera frame for tick {frame} from {self.options.host}:"
                                      f"{self.options.port} within {self.options.timeout_s:g}s\n"
                                      "  fix: check the server (GPU, -RenderOffScreen) and its log") from None
            if image.frame >= frame:  # older frames are leftovers of earlier ticks
                break
        bgra = np.frombuffer(image.raw_data, dtype=np.uint8).reshape(image.height, image.width, 4)
        self._frame = np.ascontiguousarray(bgra[:, :, 2::-1])  # BGRA -> RGB
        self._frame_id = int(image.frame)

    def _measure(self) -> dict[str, Any]:
        """Read the ego, the map and the sensors once per tick into the StateView values."""
        s, carla, route = self._session, self._session.carla, self._route
        transform, velocity = self._ego.get_transform(), self._ego.get_velocity()
        loc = transform.location
        pos = np.array([loc.x, loc.y])
        heading = float(wrap_angle(math.radians(transform.rotation.yaw)))
        lane = s.map.get_waypoint(loc, project_to_road=True, lane_type=carla.LaneType.Driving)
        lane_xy = np.array([lane.transform.location.x, lane.transform.location.y])
        lane_yaw = math.radians(lane.transform.rotation.yaw)
        on_road = s.map.get_waypoint(loc, project_to_road=False, lane_type=carla.LaneType.Driving) is not None
        previous_s = self._route_s
        route_s, self._route_lateral = route.progress(pos)
        self._route_s, self._progress_m = route_s, route_s - previous_s
        others = np.zeros((len(self._traffic), 2))
        for i, actor in enumerate(self._traffic):  # the client's cached state of this tick: no RPC
            other = actor.get_location()
            others[i] = other.x, other.y
        with self._inbox.lock:
            collided, invasions = bool(self._inbox.collisions), self._inbox.invasions
        self._view = {
            "speed": velocity.x * math.cos(heading) + velocity.y * math.sin(heading),
            "velocity": np.array([velocity.x, velocity.y]),
            "position": pos,
            "heading": heading,
            "lane_offset": signed_lateral(pos, lane_xy, lane_yaw),
            "lane_heading_error": float(wrap_angle(heading - lane_yaw)),
            "lane_width": float(lane.lane_width),
            "collided": float(collided),
            "on_road": float(on_road),
            "gap_ahead": gap_ahead(pos, heading, self._ego_half_length, others, self._traffic_half_lengths,
                                   0.5 * float(lane.lane_width)),
            "route_completion": route_s / route.length,
            "distance_to_route_end": route.length - route_s,
            "route_ahead": to_ego_frame(route.points_ahead(route_s), pos, heading),
            "lane_invasions": float(invasions),
        }
        return self._view

    def _observation(self) -> np.ndarray:
        if self.options.observation == "rgb":
            return self._frame.copy()
        v = self._view
        return np.concatenate([[v["speed"], v["lane_offset"], v["lane_heading_error"]], self._last_action,
                               v["route_ahead"].ravel()]).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {"frame": self._frame_id, "route_completion": self._view["route_completion"],
                "collided": self._view["collided"]}


# ----------------------------------------------------------------------------- profile


_FIELDS = (
    Field("speed", (), "m/s", "ego speed along its heading (negative when rolling backwards)", "ego frame"),
    Field("velocity", (2,), "m/s", "ego velocity (x, y)", "CARLA world frame"),
    Field("position", (2,), "m", "ego position (x, y)", "CARLA world frame"),
    Field("heading", (), "rad", "ego yaw in [-pi, pi); CARLA's frame is left-handed: yaw turns +x towards +y",
          "CARLA world frame"),
    Field("lane_offset", (), "m", "signed distance of the ego from the centre of the nearest driving lane "
          "(map waypoint); positive = right of the centre line, looking along the lane"),
    Field("lane_heading_error", (), "rad", "ego heading minus that lane's heading, in [-pi, pi); "
          "positive = pointing to the right of the lane direction"),
    Field("lane_width", (), "m", "width of that lane"),
    Field("collided", (), "0/1", "1 once the ego has collided with anything this episode (the episode then ends)"),
    Field("on_road", (), "0/1", "1 while the ego's centre is on a driving lane"),
    Field("gap_ahead", (), "m", f"bumper-to-bumper distance to the nearest vehicle ahead in the ego's lane; "
          f"{NO_GAP:g} when none"),
    Field("route_completion", (), "fraction", "how much of this episode's route the ego has driven, 0..1"),
    Field("distance_to_route_end", (), "m", "route length still to drive"),
    Field("route_ahead", (ROUTE_AHEAD_POINTS, 2), "m",
          f"the route at {ROUTE_AHEAD_SPACING_M:g} m spacing ahead of the ego, as (forward, right)", "ego frame"),
    Field("lane_invasions", (), "count", "lane markings crossed this episode"),
)


def _read(env: Any) -> Mapping[str, Any]:
    return env.state_view


def carla_reference(env: Any, target_speed: float = 6.5, lookahead: int = 1) -> np.ndarray:
    """Scripted route follower: pure pursuit of the route point ``5 * (lookahead + 1)`` m ahead,
    proportional speed control to ``target_speed`` m/s (about 23 km/h). It ignores traffic."""
    view = getattr(env, "unwrapped", env).state_view
    forward, right = view["route_ahead"][lookahead]
    steer = np.clip(1.5 * math.atan2(right, max(forward, 1e-3)), -1.0, 1.0)
    pedal = np.clip(0.5 * (target_speed - float(view["speed"])), -1.0, 1.0)
    return np.array([steer, pedal], dtype=np.float32)


def carla_profile() -> TaskProfile:
    schema = StateSchema(ENV_ID, _FIELDS, _read,
                         "An ego car in a CARLA town drives a route along its lane among Traffic Manager "
                         "traffic; the episode ends on a collision, on leaving the route, or at the route's end.")
    success = SuccessMetric("no collision and route_completion >= {threshold} at episode end", 0.9,
                            lambda s, t: float(s.collided) == 0.0 and float(s.route_completion) >= t)
    return TaskProfile(ENV_ID, schema, success, reference=carla_reference)


class CarlaAdapter:
    """A user's CARLA server (0.9.16), reached over the network; nothing is started here."""

    name = "carla"

    def env_ids(self) -> list[str]:
        return [ENV_ID]

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        if spec.env_id != ENV_ID:
            raise TaskError(f"unknown CARLA env {spec.env_id!r}", key="sim.env_id",
                            hint=f"use {ENV_ID} and pick the town with sim.kwargs.town")
        options = parse_options(spec.kwargs)
        steps = spec.max_episode_steps or DEFAULT_MAX_EPISODE_STEPS
        return CarlaDrivingEnv(options, max_episode_steps=steps, render_mode=render_mode)

    def profile(self, spec: SimSpec, env: gym.Env | None = None) -> TaskProfile:
        return carla_profile()
