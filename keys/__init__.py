"""Key material for devbox: the user's login key, per-box host keys, and the pinned known_hosts."""
