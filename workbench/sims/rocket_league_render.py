"""A top-down numpy renderer of a RocketSim soccar field (RocketSim has no renderer of its own).

The view is the field from above as the blue team sees it: the orange goal (+y) at the top, the
blue goal at the bottom, and +x to the *left* (Rocket League's world frame is left-handed), so a
car that steers right turns right on screen. Drawn per frame: the ball (its disc grows with
height, a dark shadow marks its ground position), each car as an oriented box in its team's
colour with a white nose marking its heading, and the blue car's boost as a bar along the bottom.
The static field (grass, outline with cut corners, centre line and circle, goals) is drawn once.
Everything is plain numpy on a few small pixel patches: ~0.5 ms per 224 x 224 frame on these
CPUs (a matplotlib figure per frame: ~65 ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TopDownRenderer", "CarSprite", "SIDE_WALL_X", "BACK_WALL_Y", "GOAL_HALF_WIDTH", "GOAL_DEPTH"]

SIDE_WALL_X = 4096.0  # uu
BACK_WALL_Y = 5120.0
CORNER = 1152.0  # uu, the corner cut's legs
GOAL_HALF_WIDTH = 892.755
GOAL_DEPTH = 880.0  # the net reaches y = +-6000
CEILING_Z = 2044.0
BALL_RADIUS = 91.25
CAR_LENGTH, CAR_WIDTH = 118.0, 84.2  # the Octane hitbox, uu

_GRASS = np.array([38, 110, 52], np.uint8)
_GRASS_OUT = np.array([20, 24, 28], np.uint8)
_LINE = np.array([225, 230, 225], np.uint8)
_BLUE = np.array([40, 110, 255], np.uint8)
_ORANGE = np.array([255, 140, 20], np.uint8)
_BALL = np.array([245, 245, 245], np.uint8)
_SHADOW = np.array([15, 50, 20], np.uint8)
_BOOST = np.array([250, 210, 40], np.uint8)


@dataclass(frozen=True)
class CarSprite:
    pos: np.ndarray  # (3,) uu
    forward: np.ndarray  # (3,) unit
    team: int  # 0 blue, 1 orange


class TopDownRenderer:
    """Frames of ``height x width x 3`` uint8; the field keeps its aspect ratio, centred."""

    def __init__(self, width: int = 224, height: int = 224):
        self.width, self.height = int(width), int(height)
        margin = 4  # px of border around the field (and room for the boost bar at the bottom)
        span_x, span_y = 2 * SIDE_WALL_X, 2 * (BACK_WALL_Y + GOAL_DEPTH)
        self.scale = min((self.width - 2 * margin) / span_x, (self.height - 2 * margin - 4) / span_y)  # px per uu
        self._cx, self._cy = self.width / 2.0, (self.height - 4) / 2.0
        self._background = self._draw_field()

    # uu -> pixel (column, row); +x is to the left, +y up
    def to_pixels(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        return self._cx - np.asarray(x) * self.scale, self._cy - np.asarray(y) * self.scale

    def _world_grid(self) -> tuple[np.ndarray, np.ndarray]:
        cols, rows = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        return (self._cx - cols) / self.scale, (self._cy - rows) / self.scale

    def _draw_field(self) -> np.ndarray:
        x, y = self._world_grid()
        ax, ay = np.abs(x), np.abs(y)
        frame = np.empty((self.height, self.width, 3), np.uint8)
        frame[:] = _GRASS_OUT
        pitch = (ax <= SIDE_WALL_X) & (ay <= BACK_WALL_Y) & (ax + ay <= SIDE_WALL_X + BACK_WALL_Y - CORNER)
        frame[pitch] = _GRASS
        goal = (ax <= GOAL_HALF_WIDTH) & (ay > BACK_WALL_Y) & (ay <= BACK_WALL_Y + GOAL_DEPTH)
        frame[goal & (y > 0)] = _ORANGE // 2 + 40
        frame[goal & (y < 0)] = _BLUE // 2 + 40
        px = 1.0 / self.scale  # one pixel in uu: line thickness
        outline = pitch & ((ax > SIDE_WALL_X - px) | (ay > BACK_WALL_Y - px)
                           | (ax + ay > SIDE_WALL_X + BACK_WALL_Y - CORNER - 1.5 * px))
        outline &= ~((ax <= GOAL_HALF_WIDTH) & (ay > BACK_WALL_Y - px))  # the goal mouths stay open
        centre = pitch & ((ay < px / 2) | (np.abs(np.hypot(x, y) - 1000.0) < px / 2))
        frame[outline | centre] = _LINE
        return frame

    def _disc(self, frame: np.ndarray, col: float, row: float, radius: float, colour: np.ndarray) -> None:
        r = max(radius, 1.5)
        c0, c1 = max(int(col - r), 0), min(int(col + r) + 2, self.width)
        r0, r1 = max(int(row - r), 0), min(int(row + r) + 2, self.height)
        if c0 >= c1 or r0 >= r1:
            return
        cc, rr = np.meshgrid(np.arange(c0, c1) + 0.5, np.arange(r0, r1) + 0.5)
        mask = (cc - col) ** 2 + (rr - row) ** 2 <= r * r
        frame[r0:r1, c0:c1][mask] = colour

    def _car(self, frame: np.ndarray, car: CarSprite) -> None:
        col, row = self.to_pixels(car.pos[0], car.pos[1])
        fwd = np.array([-car.forward[0], -car.forward[1]], np.float64)  # screen direction (col, row)
        norm = float(np.hypot(*fwd))
        fwd = fwd / norm if norm > 1e-6 else np.array([0.0, -1.0])
        side = np.array([-fwd[1], fwd[0]])
        # Drawn at three times its size (at least 7 x 4 px) so a car and its heading stay visible
        # in a 224 px frame, where the real car would be ~2 x 1.5 px.
        half_len = max(1.5 * CAR_LENGTH * self.scale, 3.5)
        half_wid = max(1.5 * CAR_WIDTH * self.scale, 2.0)
        reach = int(np.ceil(half_len + half_wid)) + 1
        c0, c1 = max(int(col) - reach, 0), min(int(col) + reach + 1, self.width)
        r0, r1 = max(int(row) - reach, 0), min(int(row) + reach + 1, self.height)
        if c0 >= c1 or r0 >= r1:
            return
        cc, rr = np.meshgrid(np.arange(c0, c1) + 0.5 - col, np.arange(r0, r1) + 0.5 - row)
        along, across = cc * fwd[0] + rr * fwd[1], cc * side[0] + rr * side[1]
        body = (np.abs(along) <= half_len) & (np.abs(across) <= half_wid)
        patch = frame[r0:r1, c0:c1]
        patch[body] = _BLUE if car.team == 0 else _ORANGE
        patch[body & (along > half_len * 0.35)] = _LINE  # the nose: which way the car points

    def render(self, ball_pos: np.ndarray, cars: Sequence[CarSprite], boost: float | None = None) -> np.ndarray:
        """One frame: ``ball_pos`` (3,) uu, the cars, and ``boost`` (0..100) of the agent's car."""
        frame = self._background.copy()
        col, row = self.to_pixels(ball_pos[0], ball_pos[1])
        radius = BALL_RADIUS * self.scale * 1.6
        self._disc(frame, col, row, radius, _SHADOW)
        for car in cars:
            self._car(frame, car)
        height = float(np.clip((ball_pos[2] - BALL_RADIUS) / CEILING_Z, 0.0, 1.0))
        self._disc(frame, col, row, radius * (1.0 + height), _BALL)
        if boost is not None:
            filled = int(round(np.clip(boost, 0.0, 100.0) / 100.0 * (self.width - 8)))
            frame[self.height - 4:self.height - 1, 4:4 + filled] = _BOOST
        return frame
