"""devbox: private, SSH-reachable dev containers on shared GPU servers."""

__version__ = "0.1.0"
