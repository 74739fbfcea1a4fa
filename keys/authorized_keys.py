"""authorized_keys content for a box: which public keys may log in as its user."""

from __future__ import annotations

from devbox.keys.keypair import public_key_blob


def render(public_lines: list[str]) -> bytes:
    return "".join(line.strip() + "\n" for line in public_lines if line.strip()).encode()


def with_key(current: str, public_line: str) -> bytes | None:
    """`current` plus `public_line`, or None when that key (whatever its comment) is already in."""
    lines = [ln for ln in current.splitlines() if ln.strip()]
    wanted = public_key_blob(public_line)
    if any(public_key_blob(ln) == wanted for ln in lines):
        return None
    return render([*lines, public_line])
