"""Configuration: TOML in, validated typed objects out (interfaces.md §2)."""

from .load import ConfigError, Problem, check, load, load_text
from .units import parse_duration, parse_size

__all__ = ["ConfigError", "Problem", "check", "load", "load_text", "parse_duration", "parse_size"]
