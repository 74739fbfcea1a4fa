"""config.yaml: the user's defaults; every rule's error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devbox import config
from devbox.config import ConfigError, Settings
from devbox.errors import UsageError

from .conftest import usage_error

GOOD = """\
# mine
host: gpu1
image: pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime
alias_prefix: lab.
identity: /keys/id_ed25519
ssh_config: /etc/devbox/ssh_config
"""


def _write(tmp_path: Path, body: str | bytes) -> Path:
    path = tmp_path / "config.yaml"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body, encoding="utf-8")
    return path


def _error(path: Path) -> ConfigError:
    """The ConfigError load() raises: exit 2, one line, as the CLI prints it."""
    exc = usage_error(config.load, path)
    assert isinstance(exc, ConfigError)
    return exc


# ---------------------------------------------------------------- good files


def test_a_good_file_sets_every_key_and_remembers_its_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    settings = config.load(path)
    assert settings == Settings(
        host="gpu1",
        image="pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
        alias_prefix="lab.",
        identity=Path("/keys/id_ed25519"),
        ssh_config=Path("/etc/devbox/ssh_config"),
        path=path,
        lines=(("host", 2), ("image", 3), ("alias_prefix", 4), ("identity", 5), ("ssh_config", 6)),
    )
    assert settings.where("image") == f"{path}:3"
    assert settings.where("ssh_config") == f"{path}:6"


def test_a_missing_file_sets_nothing(tmp_path: Path) -> None:
    assert config.load(tmp_path / "nope" / "config.yaml") == Settings()


@pytest.mark.parametrize("body", ["", "\n\n", "# only a comment\n", "---\n", "{}\n"])
def test_an_empty_file_sets_nothing_but_is_remembered(tmp_path: Path, body: str) -> None:
    path = _write(tmp_path, body)
    assert config.load(path) == Settings(path=path)


def test_identity_and_ssh_config_expand_tilde_against_home(tmp_path: Path, clean_home: Path) -> None:
    path = _write(tmp_path, "identity: ~/.ssh/id_work\nssh_config: ~/ssh/config\n")
    settings = config.load(path)
    assert settings.identity == clean_home / ".ssh" / "id_work"
    assert settings.ssh_config == clean_home / "ssh" / "config"


def test_host_may_be_the_local_engine(tmp_path: Path) -> None:
    assert config.load(_write(tmp_path, "host: local\n")).host == "local"


def test_an_empty_alias_prefix_means_bare_box_names_as_with_the_variable(tmp_path: Path) -> None:
    assert config.load(_write(tmp_path, 'alias_prefix: ""\n')).alias_prefix == ""


def test_quoted_numbers_are_text(tmp_path: Path) -> None:
    assert config.load(_write(tmp_path, 'image: "3.10"\n')).image == "3.10"


def test_load_reads_the_file_in_xdg_config_home(
    tmp_path: Path, clean_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg" / "devbox").mkdir(parents=True)
    (tmp_path / "xdg" / "devbox" / "config.yaml").write_text("image: alpine:3.20\n")
    settings = config.load()
    assert settings.image == "alpine:3.20"
    assert settings.path == tmp_path / "xdg" / "devbox" / "config.yaml"


def test_where_names_the_file_for_a_key_it_does_not_set(tmp_path: Path, clean_home: Path) -> None:
    path = _write(tmp_path, "image: alpine\n")
    assert config.load(path).where("host") == str(path)
    assert Settings().where("host") == str(clean_home / ".config" / "devbox" / "config.yaml")


def test_the_starter_sets_nothing_and_each_of_its_examples_is_valid(tmp_path: Path, clean_home: Path) -> None:
    assert config.load(_write(tmp_path, config.STARTER)) == Settings(path=tmp_path / "config.yaml")
    keys = ("host:", "image:", "alias_prefix:", "identity:", "ssh_config:")
    examples = [line[2:] for line in config.STARTER.splitlines() if line[2:].startswith(keys)]
    settings = config.load(_write(tmp_path, "\n".join(examples) + "\n"))
    assert {key for key, _ in settings.lines} == {"host", "image", "alias_prefix", "identity", "ssh_config"}


# ---------------------------------------------------------------- one test per rule


def test_unknown_key_suggests_the_closest_one(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, "host: gpu1\nimgae: ubuntu\n"))
    assert exc.message == f"{tmp_path / 'config.yaml'}:2: imgae: unknown key"
    assert exc.hint == "did you mean 'image'?"


def test_unknown_key_without_a_close_one_lists_the_keys(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, "\nzzz: 1\n"))
    assert exc.message.endswith("config.yaml:2: zzz: unknown key")
    assert exc.hint == "keys: host, image, alias_prefix, identity, ssh_config"


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, "image: a\nhost: gpu1\nimage: b\n"))
    assert exc.message.endswith("config.yaml:3: image: duplicate key (first on line 1)")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("3", "a number"),
        ("3.10", "a number"),
        ("yes", "true/false"),
        ("", "empty"),
        ("[a, b]", "a list"),
        ("{a: b}", "a mapping"),
        ("!!int abc", "a number"),  # an explicit tag is described, never built
        ("!!binary aGk=", "a binary value"),
        ("!custom x", "a !custom value"),
    ],
)
def test_a_value_that_is_not_text_is_refused(tmp_path: Path, value: str, kind: str) -> None:
    exc = _error(_write(tmp_path, f"host: gpu1\nimage: {value}\n"))
    assert exc.message.endswith(f"config.yaml:2: image: must be text, not {kind}")


def test_a_key_that_is_not_a_name_is_refused(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, "host: gpu1\n? [a, b]\n: c\n"))
    assert exc.message.endswith("config.yaml:2: keys must be names")


@pytest.mark.parametrize("name", ["GPU1", "auto", "all", "gpu_1", "-gpu"])
def test_host_is_checked_as_a_host_name(tmp_path: Path, name: str) -> None:
    exc = _error(_write(tmp_path, f"\n\nhost: {name}\n"))
    assert exc.message.endswith(f"config.yaml:3: host: invalid host name {name!r}")
    assert "lowercase" in (exc.hint or "")


def test_image_is_checked_as_image_flag_is(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, 'image: "   "\n'))
    assert exc.message.endswith("config.yaml:1: image: the image name is empty")


@pytest.mark.parametrize("prefix", ["my box-", "-x", "a*", "ü"])
def test_alias_prefix_must_make_aliases_ssh_can_use(tmp_path: Path, prefix: str) -> None:
    exc = _error(_write(tmp_path, f"image: a\nalias_prefix: {prefix!r}\n".replace("'", '"')))
    assert exc.message.endswith(
        f"config.yaml:2: alias_prefix: {prefix!r} makes ssh aliases such as {prefix + 'mybox'!r}, "
        "which ssh cannot use"
    )
    assert "DEVBOX_HOST_PREFIX" not in exc.message


@pytest.mark.parametrize("key", ["identity", "ssh_config"])
@pytest.mark.parametrize("value", ["id_ed25519", "./keys/id", "~nosuchuser-devbox/id", '""'])
def test_paths_must_be_absolute_after_tilde_expansion(tmp_path: Path, key: str, value: str) -> None:
    exc = _error(_write(tmp_path, f"host: gpu1\n{key}: {value}\n"))
    assert f"config.yaml:2: {key}: " in exc.message
    assert exc.message.endswith("is not an absolute path")


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, "host: gpu1\nimage: a: b\n"))
    assert exc.message.startswith(f"{tmp_path / 'config.yaml'}:2: not valid YAML: ")


def test_two_documents_are_a_syntax_error_at_the_second(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, "host: gpu1\n---\nimage: a\n"))
    assert exc.message.endswith(
        "config.yaml:2: not valid YAML: expected a single document in the stream, but found another document"
    )


def test_a_control_character_is_a_syntax_error_on_its_line(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, "host: gpu1\nimage: a\x00b\n"))
    assert exc.message.endswith("config.yaml:2: not valid YAML: character U+0000 is not allowed")


@pytest.mark.parametrize(("body", "line"), [("- host: gpu1\n", 1), ("\njust text\n", 2)])
def test_the_file_must_be_a_mapping(tmp_path: Path, body: str, line: int) -> None:
    exc = _error(_write(tmp_path, body))
    assert exc.message.endswith(f"config.yaml:{line}: the file must be a mapping of keys")


def test_a_binary_file_is_refused(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, b"\x89PNG\r\n\x1a\n\xff\xfe"))
    assert exc.message == f"{tmp_path / 'config.yaml'}: not UTF-8 text"


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").mkdir()  # unreadable as a file even for root
    exc = _error(tmp_path / "config.yaml")
    assert exc.message.startswith(f"{tmp_path / 'config.yaml'}: cannot read it: ")


def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path) -> None:
    exc = _error(_write(tmp_path, "image: " + "[" * 5000 + "\n"))
    assert "not valid YAML" in exc.message


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_no_content_raises_anything_but_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, body
) -> None:
    path = _write(tmp_path_factory.mktemp("any"), body)
    try:
        config.load(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@given(st.text(alphabet="hostimaglsdnfy_:!&*[]{}-?#|>'\" \n0123456789~/.", max_size=120))
def test_yaml_shaped_content_raises_nothing_but_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, body: str
) -> None:
    path = _write(tmp_path_factory.mktemp("yamlish"), body)
    try:
        config.load(path)
    except ConfigError as exc:
        assert str(path) in exc.message


def test_config_error_is_a_usage_error() -> None:
    assert issubclass(ConfigError, UsageError)
    assert ConfigError("x").exit_code == 2


# ---------------------------------------------------------------- precedence


def test_a_flag_wins_over_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVBOX_IMAGE", "from-env")
    assert config.resolve("from-flag", "DEVBOX_IMAGE", "from-file", "default") == "from-flag"


def test_the_environment_wins_over_the_file_even_when_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVBOX_HOST_PREFIX", "env-")
    assert config.resolve(None, "DEVBOX_HOST_PREFIX", "file-", "devbox-") == "env-"
    monkeypatch.setenv("DEVBOX_HOST_PREFIX", "")
    assert config.resolve(None, "DEVBOX_HOST_PREFIX", "file-", "devbox-") == ""


def test_the_file_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVBOX_IMAGE", raising=False)
    assert config.resolve(None, "DEVBOX_IMAGE", "from-file", "default") == "from-file"
    assert config.resolve(None, None, Path("/k"), Path("/d")) == Path("/k")


def test_the_default_is_the_last_resort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVBOX_IMAGE", raising=False)
    assert config.resolve(None, "DEVBOX_IMAGE", None, "ubuntu:24.04") == "ubuntu:24.04"
    assert config.resolve(None, None, None, None) is None
