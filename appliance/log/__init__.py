"""Logs: the HAProxy httplog access line and event lines, written without blocking the loop."""
