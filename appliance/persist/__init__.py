"""Persistence: keeping each user on the server that holds his context."""
