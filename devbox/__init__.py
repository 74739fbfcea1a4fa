"""devbox: private, SSH-reachable dev containers on shared GPU servers."""

from devbox import deps

__version__ = "0.1.0"

deps.trim()  # before anything imports the docker SDK or paramiko
