"""Weir's Textual console: farm status and management over the runtime API."""
