"""``Resources``: what one call of a deployed function needs, as the user says it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    """What one call needs. ``None`` leaves the target's default."""

    memory_mb: int | None = None
    cpus: float | None = None
    gpus: int = 0
    timeout_s: float | None = None


__all__ = ["Resources"]
