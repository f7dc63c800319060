"""Isolation backends for running untrusted code (Docker, bubblewrap) and the sandbox
image recipe."""
