"""Weir: the load-balancer appliance (L7 proxy, L4 setup, checks, persistence, runtime API)."""

__version__ = "0.1.0"
