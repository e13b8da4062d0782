"""`--robot.type=so100_dryrun`: an SO-100-shaped robot without hardware, for checking a checkpoint, its
latency and its fps with `lerobot-rollout` before touching an arm.

It has the motor names and the observation/action features of LeRobot's `so100_follower` and accepts its
config fields (`port`, `cameras`, `max_relative_target`, ...; those that only concern the bus are ignored).
The joints go toward each commanded position (`tracking` = 1: the observation is the last command), a
configured camera yields synthetic frames of its configured size (no device is opened), every received
action can be written to `action_log` (JSON lines), and the measured loop rate is logged.
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
        self._frames = {name: _pattern(cam.height, cam.width) for name, cam in config.cameras.items()}
        self._log = None
        self._times: list[float] = []
        self._last_report = 0.0
        self._reported = 0  # index of the first send time not yet covered by a loop-rate report

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
        obs = {f"{m}.pos": v for m, v in self._position.items()}
        # Shifting by the number of actions received makes consecutive frames differ, as a camera's would.
        for name, frame in self._frames.items():
            obs[name] = np.roll(frame, len(self._times), axis=1)
        return obs

    @check_if_not_connected
    def send_action(self, action: dict) -> dict:
        now = time.perf_counter()
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
        summary = _timing(self._times)
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


def _pattern(height: int, width: int) -> np.ndarray:
    """A colour gradient, so the policy's image normalisation sees something other than a constant."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack(np.broadcast_arrays(x + 0 * y, y + 0 * x, (x + y) / 2), axis=-1).astype(np.uint8)
