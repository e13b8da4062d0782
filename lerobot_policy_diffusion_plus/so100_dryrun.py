"""`--robot.type=so100_dryrun`: an SO-100-shaped robot without hardware, for checking a checkpoint, its
latency and its fps with `lerobot-rollout` before touching an arm.

It has the motor names and the observation/action features of LeRobot's `so100_follower` and accepts its
config fields (`port`, `cameras`, `max_relative_target`, ...; those that only concern the bus are ignored).
The joints go toward each commanded position (`tracking` = 1: the observation is the last command), a
configured camera yields synthetic frames of its configured size (no device is opened: a coloured target
blob moving over a gradient, as in `examples/so100/synthetic_dataset.py`), every received
action can be written to `action_log` (JSON lines), and the measured loop rate is logged, with the number
of loop ticks that sent no action once actions had started (an RTC queue that ran dry).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lerobot.robots import Robot, RobotConfig
from lerobot.robots.so_follower.config_so_follower import SOFollowerConfig
from lerobot.robots.utils import ensure_safe_goal_position
from lerobot.utils.decorators import check_if_already_connected, check_if_not_connected

from .errors import ConfigError

logger = logging.getLogger(__name__)

MOTORS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


@RobotConfig.register_subclass("so100_dryrun")
@dataclass
class SO100DryrunConfig(RobotConfig, SOFollowerConfig):
    # Inherits so100_follower's fields so its command lines work unchanged; no port is ever opened.
    port: str = "dry-run"
    # Fraction of the way from the current to the commanded position covered per action (1: exact).
    tracking: float = 1.0
    # Where to write every received action and a final timing summary (JSON lines); None: not written.
    action_log: Path | None = None
    # Seconds between the logged loop-rate reports.
    report_every_s: float = 5.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.tracking <= 1.0:
            raise ConfigError("tracking", self.tracking, "a fraction in (0, 1]", what="robot")
        if not self.report_every_s > 0:
            raise ConfigError("report_every_s", self.report_every_s, "a positive number of seconds", what="robot")


class SO100Dryrun(Robot):
    config_class = SO100DryrunConfig
    name = "so100_dryrun"

    def __init__(self, config: SO100DryrunConfig):
        super().__init__(config)
        self.config = config
        self.cameras = dict(config.cameras)  # configs only: nothing to open
        self._connected = False
        self._position = dict.fromkeys(MOTORS, 0.0)
        # Precomputed per camera: the background, the blob's stamp and its track; a tick only copies and stamps.
        self._scenes = {
            name: _Scene(cam.height, cam.width, BLOB_COLOURS[k % len(BLOB_COLOURS)], seed=k)
            for k, (name, cam) in enumerate(config.cameras.items())
        }
        self._log = None
        self._times: list[float] = []
        self._last_report = 0.0
        self._reported = 0  # index of the first send time not yet covered by a loop-rate report
        # A control loop reads one observation per tick and then sends an action if it has one: a second read
        # without a send in between is a tick without an action (counted once actions have started).
        self._awaiting_action = False
        self._ticks_without_action = 0

    @property
    def observation_features(self) -> dict:
        cams = {name: (cam.height, cam.width, 3) for name, cam in self.config.cameras.items()}
        return {**self.action_features, **cams}

    @property
    def action_features(self) -> dict:
        return {f"{m}.pos": float for m in MOTORS}

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    @check_if_already_connected
    def connect(self, calibrate: bool = True) -> None:
        if self.config.action_log is not None:
            self.config.action_log.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.config.action_log, "w")
        self._t0 = self._last_report = time.perf_counter()
        self._connected = True
        logger.info("%s connected (dry run: no hardware)", self)

    @check_if_not_connected
    def get_observation(self) -> dict:
        if self._awaiting_action and self._times:
            self._ticks_without_action += 1
        self._awaiting_action = True
        obs = {f"{m}.pos": v for m, v in self._position.items()}
        # The blob moves with the number of actions received, so consecutive frames differ as a camera's would.
        for name, scene in self._scenes.items():
            obs[name] = scene.frame(len(self._times))
        return obs

    @check_if_not_connected
    def send_action(self, action: dict) -> dict:
        now = time.perf_counter()
        self._awaiting_action = False
        received = {k: float(v) for k, v in action.items() if k.endswith(".pos")}
        goal = {k.removesuffix(".pos"): v for k, v in received.items()}
        if self.config.max_relative_target is not None:
            goal = ensure_safe_goal_position(
                {m: (g, self._position[m]) for m, g in goal.items()}, self.config.max_relative_target
            )
        for m, g in goal.items():
            self._position[m] += self.config.tracking * (g - self._position[m])
        self._times.append(now)
        sent = {f"{m}.pos": g for m, g in goal.items()}
        if self._log is not None:
            # What the policy commanded, before any max_relative_target clipping.
            self._log.write(json.dumps({"t": now - self._t0, "action": received}) + "\n")
        if now - self._last_report >= self.config.report_every_s:
            logger.info("%s loop: %s", self, _timing(self._times[self._reported :]))
            self._last_report, self._reported = now, len(self._times) - 1
        return sent

    @check_if_not_connected
    def disconnect(self) -> None:
        summary = {**_timing(self._times), "ticks_without_action": self._ticks_without_action}
        logger.info("%s received %d actions; loop: %s", self, len(self._times), summary)
        if self._log is not None:
            self._log.write(json.dumps({"summary": summary}) + "\n")
            self._log.close()
            self._log = None
        self._connected = False


def _timing(times: list[float]) -> dict:
    """Measured rate of a list of send times: mean fps, and the longest and 95th-percentile periods."""
    if len(times) < 2:
        return {"actions": len(times)}
    periods = np.diff(times)
    return {
        "actions": len(times),
        "fps": round((len(times) - 1) / (times[-1] - times[0]), 2),
        "max_period_ms": round(1000 * float(periods.max()), 1),
        "p95_period_ms": round(1000 * float(np.percentile(periods, 95)), 1),
    }


def pattern(height: int, width: int) -> np.ndarray:
    """A colour gradient, so the policy's image normalisation sees something other than a constant."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack(np.broadcast_arrays(x + 0 * y, y + 0 * x, (x + y) / 2), axis=-1).astype(np.uint8)


# The target blob of the synthetic frames: one colour per camera, in the order the cameras are configured
# (the first camera's is red, the second's green). None of them occurs in `pattern`'s gradient, whose
# blue channel is the mean of its red and green ones.
BLOB_COLOURS = ((230, 40, 40), (40, 200, 60), (40, 80, 230))


def blob_radius(height: int, width: int) -> int:
    side = min(height, width)
    return min(max(1, side // 12), (side - 1) // 2)  # 40 px at 480x640; the disc always fits


def blob_stamp(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) boolean disc; symmetric about its centre, so its pixels' mean is the centre exactly."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


HOLD = (8, 16)  # a target stays 8 to 15 frames before it is put elsewhere


def check_hold(hold: tuple[int, int]) -> None:
    if not 1 <= hold[0] < hold[1]:
        raise ValueError(f"hold must be (MIN, END) with 1 <= MIN < END frames, got {tuple(hold)}")


def blob_track(frames: int, height: int, width: int, rng: np.random.Generator,
               hold: tuple[int, int] = HOLD) -> np.ndarray:
    """(frames, 2) integer blob centres (row, column): the target is put at a random place every `hold[0]` to
    `hold[1] - 1` frames and drifts slowly in between; it stays wholly inside the image."""
    check_hold(hold)
    r = blob_radius(height, width)
    low, high = np.array([r, r]), np.array([height - 1 - r, width - 1 - r])
    out = np.empty((frames, 2), dtype=np.int64)
    i = 0
    while i < frames:
        n = int(rng.integers(*hold))
        start = rng.uniform(low, high)
        drift = rng.uniform(-0.01, 0.01, size=2) * np.array([height, width])
        out[i : i + n] = np.clip(np.rint(start + drift * np.arange(n)[:, None]), low, high)[: frames - i]
        i += n
    return out


def draw_blob(background: np.ndarray, centre, colour, stamp: np.ndarray) -> np.ndarray:
    """A copy of `background` (H, W, 3 uint8) with the disc `stamp` painted in `colour` at `centre`."""
    out = background.copy()
    r = stamp.shape[0] // 2
    y, x = int(centre[0]), int(centre[1])
    patch = out[y - r : y + r + 1, x - r : x + r + 1]
    np.copyto(patch, np.asarray(colour, dtype=np.uint8), where=stamp[..., None])
    return out


class _Scene:
    """One dry-run camera: a fixed blob track of CYCLE frames, replayed in a loop."""

    CYCLE = 600

    def __init__(self, height: int, width: int, colour, seed: int):
        self.background = pattern(height, width)
        self.colour = np.asarray(colour, dtype=np.uint8)
        self.stamp = blob_stamp(blob_radius(height, width))
        self.track = blob_track(self.CYCLE, height, width, np.random.default_rng(seed))

    def frame(self, tick: int) -> np.ndarray:
        return draw_blob(self.background, self.track[tick % self.CYCLE], self.colour, self.stamp)
