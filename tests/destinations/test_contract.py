"""Collects the destination contract (contract.py) for every kind in conftest.KINDS."""

from .contract import *  # noqa: F401,F403
