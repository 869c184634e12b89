"""Latency: timing convs and their separable forms on this machine."""

from convaudit.latency.measure import measure

__all__ = ["measure"]
