"""Specs for a box on another host: mount sources are read against that host's login (HostFacts),
and the box's login user mirrors that account (users.box_user)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devbox.errors import UsageError
from devbox.spec import HostFacts, LoginUser, Mount, from_flags, parse_mount
from devbox.users import _LOGIN_RE, box_user

from .conftest import usage_error

BOB = LoginUser("bob", 1500, 1500)


def remote(*existing: str, where: str = " on gpu1") -> HostFacts:
    return HostFacts(BOB, "/srv/home", exists=lambda p: p in existing, where=where)


# -- parse_mount against a host's facts ------------------------------------------------------------------


def test_tilde_slash_is_the_hosts_home() -> None:
    facts = remote("/srv/home/data")
    assert parse_mount("~/data:/workspace/data:ro", facts) == Mount("/srv/home/data", "/workspace/data", True)


def test_tilde_alone_is_the_hosts_home() -> None:
    assert parse_mount("~:/h", remote("/srv/home")) == Mount("/srv/home", "/h", False)


def test_tilde_ignores_the_local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_mount("~/data:/d", remote("/srv/home/data")).source == "/srv/home/data"


def test_a_home_with_a_trailing_slash_gives_a_normal_path() -> None:
    facts = HostFacts(BOB, "/srv/home/", exists=lambda p: p == "/srv/home/data")
    assert parse_mount("~/data/:/d", facts).source == "/srv/home/data"


def test_existence_is_asked_for_the_expanded_normalized_path() -> None:
    asked: list[str] = []

    def exists(path: str) -> bool:
        asked.append(path)
        return True

    parse_mount("~/./a/../data/:/d", HostFacts(BOB, "/srv/home", exists=exists))

    assert asked == ["/srv/home/data"]


def test_missing_source_names_the_expanded_path_and_the_host() -> None:
    err = usage_error(parse_mount, "~/nope:/d", remote("/srv/home/data"))
    assert err.message == "mount source /srv/home/nope does not exist on gpu1"


def test_missing_source_on_the_local_engine_has_no_host_suffix() -> None:
    err = usage_error(parse_mount, "/nowhere/x:/d", remote(where=""))
    assert err.message == "mount source /nowhere/x does not exist"


def test_unchecked_facts_accept_a_source_that_exists_nowhere() -> None:
    facts = HostFacts(BOB, "/srv/home", exists=None)
    assert parse_mount("/nowhere/at/all:/d", facts) == Mount("/nowhere/at/all", "/d", False)
    assert parse_mount("~/later:/d", facts).source == "/srv/home/later"


def test_tilde_user_is_not_expanded_and_is_refused_as_relative() -> None:
    err = usage_error(parse_mount, "~root/data:/d", HostFacts(BOB, "/srv/home", exists=None))
    assert "is not an absolute path" in err.message


@pytest.mark.parametrize("text", ["data:/d", "~data:/d", "./x:/d"])
def test_relative_sources_are_refused_before_asking_the_host(text: str) -> None:
    asked: list[str] = []
    facts = HostFacts(BOB, "/srv/home", exists=lambda p: asked.append(p) or True)

    usage_error(parse_mount, text, facts)

    assert asked == []


def test_unchecked_facts_look_nothing_up() -> None:
    facts = HostFacts.unchecked()
    assert facts.exists is None and facts.home == "/" and facts.where == ""


def test_local_facts_use_this_machines_home_and_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    facts = HostFacts.local()
    assert facts.home == str(tmp_path)
    assert facts.exists is os.path.exists


@given(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters=":\x00"), min_size=1, max_size=20
    )
)
def test_an_accepted_tilde_source_stays_under_the_hosts_home_or_is_normalized_out(rest: str) -> None:
    try:
        mount = parse_mount(f"~/{rest}:/d", HostFacts(BOB, "/srv/home", exists=None))
    except UsageError:
        return
    assert mount.source == os.path.normpath(os.path.join("/srv/home", rest))


# -- from_flags with a host's facts ------------------------------------------------------------------------


def test_from_flags_takes_the_login_user_and_mounts_from_the_hosts_facts() -> None:
    spec = from_flags(
        name="x", image="img", mounts=["~/data:/workspace/data"], facts=remote("/srv/home/data")
    )

    assert spec.user == BOB
    assert spec.home == "/home/bob"
    assert spec.mounts == (Mount("/srv/home/data", "/workspace/data", False),)


def test_from_flags_checks_mount_targets_against_the_hosts_login_home() -> None:
    with pytest.raises(UsageError):
        from_flags(name="x", image="img", mounts=["~/data:/home/bob"], facts=remote("/srv/home/data"))


# -- box_user ----------------------------------------------------------------------------------------------


def test_root_on_the_host_gets_an_ordinary_dev_user() -> None:
    assert box_user("root", 0, 0) == LoginUser("dev", 1000, 1000)


def test_an_ordinary_account_is_mirrored() -> None:
    assert box_user("bob", 1500, 1501) == LoginUser("bob", 1500, 1501)


@pytest.mark.parametrize("name", ["Bob", "bob.smith", "1bob", "b" * 33, "", "bób", "bob smith"])
def test_names_a_box_cannot_hold_become_dev_keeping_uid_and_gid(name: str) -> None:
    assert box_user(name, 1500, 1501) == LoginUser("dev", 1500, 1501)


@given(st.text(max_size=40), st.integers(1, 2**31), st.integers(0, 2**31))
def test_box_user_name_is_always_valid_in_the_box(name: str, uid: int, gid: int) -> None:
    user = box_user(name, uid, gid)
    assert _LOGIN_RE.fullmatch(user.name)
    assert (user.uid, user.gid) == (uid, gid)
    assert user.name in (name, "dev")
