"""Unit-test settings shared by every module here."""

from hypothesis import settings

# The 2-core CI machine also runs a dockerd and e2e boxes: wall-clock deadlines would make
# property tests flaky without making them any stricter.
settings.register_profile("devbox", deadline=None)
settings.load_profile("devbox")
