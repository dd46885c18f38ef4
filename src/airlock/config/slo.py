"""``[slo]``: the targets ``airlock slo`` and the live gauges judge the record against.

The defaults are the outage playbook's: every link available 99.95 % of the time, fail
over within 2 s, persist an item within 50 ms, and 95 % of items executed or expired
within their strategy's bound (``bound_seconds``, or the strategy's own in
``strategy_bounds``: ``strategy_bounds = { scalper = 30, rebalance = 3600 }``).
"""

from __future__ import annotations

import re
from typing import Any

from airlock.config.settings import section, setting
from airlock.errors import ConfigError

_STRATEGY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def strategy_bounds(where: str, key: str, value: Any) -> tuple[tuple[str, float], ...]:
    """A table of strategy name -> seconds (a number in 0.001..31536000)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} {key} must be a table of strategy = seconds")
    bounds = []
    for name, seconds in sorted(value.items()):
        if not _STRATEGY_RE.fullmatch(name):
            raise ConfigError(f"{where} {key}: {name!r} is not a strategy name")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ConfigError(f"{where} {key}.{name} must be a number of seconds")
        if not 0.001 <= seconds <= 31_536_000:
            raise ConfigError(f"{where} {key}.{name} must be in 0.001..31536000 s")
        bounds.append((name, float(seconds)))
    return tuple(bounds)


@section
class SloConfig:
    """The service-level targets (``[slo]``)."""

    availability_pct: float = setting(default=99.95, low=0, high=100)
    failover_seconds: float = setting(default=2.0, low=0.001, high=86_400)
    persist_ms: float = setting(default=50.0, low=0.001, high=600_000)
    within_bound_pct: float = setting(default=95.0, low=0, high=100)
    bound_seconds: float = setting(default=300.0, low=0.001, high=31_536_000)
    strategy_bounds: tuple[tuple[str, float], ...] = setting(default=(), check=strategy_bounds)
    live_window_seconds: float = setting(default=3600.0, low=1, high=31_536_000)
    live_seconds: float = setting(default=30.0, low=1, high=3600)  # gauges recomputed
