"""Errors a user meets, each naming the field, the bad value and what is allowed."""

from __future__ import annotations

from typing import Any, Iterable


class ConfigError(Exception):
    """A bad policy setting.

    Deliberately not a ValueError: draccus (LeRobot's CLI parser) turns a ValueError raised while building a
    config into "Couldn't instantiate class ..." and drops the reason, while other exceptions reach the
    command line with their message.
    """

    def __init__(self, field: str, value: Any, allowed: str, what: str = "policy"):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"invalid {what} setting {field}={value!r}: expected {allowed}")


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(field, value, f"one of {', '.join(map(repr, allowed))}")


class ObservationError(ValueError):
    """An observation the policy must not act on (missing key, wrong shape, NaN or Inf)."""


class CheckpointError(RuntimeError):
    """A checkpoint that does not match its config, or a damaged weights file."""


class ActionError(RuntimeError):
    """A sampled action the policy refuses to return (NaN or Inf), so nothing of its chunk is sent.

    `lerobot-rollout`'s sync loop stops on it; its RTC thread retries (10 times, 0.5 s apart) and then ends
    the rollout (tests/test_rollout.py runs both)."""
