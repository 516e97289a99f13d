"""Volume lists, selectors and de-duplication (volimg.selection): tables, no cloud."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from volimg.errors import ExitCode, InputError
from volimg.selection import (
    parse_selector,
    parse_volume_list,
    selector_mapping,
    unique_refs,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("vol-a\n", ("vol-a",)),
        ("vol-a\nvol-b", ("vol-a", "vol-b")),
        ("  vol-a  \n\tvol-b\t\n", ("vol-a", "vol-b")),
        ("\n\n   \nvol-a\n\n", ("vol-a",)),
        ("# nightly set\nvol-a\n  # indented comment\nvol-b\n", ("vol-a", "vol-b")),
        ("vol-a # not a comment\n", ("vol-a # not a comment",)),
        ("vol#1\n", ("vol#1",)),
        ("vol-a\nvol-b\nvol-a\n", ("vol-a", "vol-b")),
        ("vol-a\r\nvol-b\r\n", ("vol-a", "vol-b")),
        ("\ufeffvol-a\nvol-b\n", ("vol-a", "vol-b")),
        ("my volume\n", ("my volume",)),
        (
            "5f0b3c1e-8a39-4a5e-9a51-1c1b0a7d2e11\nvol-a\n",
            ("5f0b3c1e-8a39-4a5e-9a51-1c1b0a7d2e11", "vol-a"),
        ),
    ],
    ids=[
        "empty",
        "one",
        "two-no-final-newline",
        "whitespace-stripped",
        "blank-lines",
        "whole-line-comments",
        "trailing-hash-is-part-of-name",
        "hash-inside-name",
        "duplicates-keep-first",
        "crlf",
        "byte-order-mark",
        "inner-space-kept",
        "ids",
    ],
)
def test_parse_volume_list(text: str, expected: tuple[str, ...]) -> None:
    assert parse_volume_list(text, "nightly.txt") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vol-a\nbad\x00name\n", "line 2 of list.txt contains a NUL byte"),
        ("x" * 256 + "\n", "line 1 of list.txt is 256 characters long; a volume name or ID"),
    ],
    ids=["nul-byte", "too-long"],
)
def test_parse_volume_list_refuses(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_volume_list(text, "list.txt")
    assert str(caught.value).startswith(message)
    assert caught.value.hint
    assert caught.value.exit_code == ExitCode.USAGE


def test_parse_volume_list_accepts_the_longest_name() -> None:
    assert parse_volume_list("x" * 255, "-") == ("x" * 255,)


# Names as Cinder allows them, minus what cannot sit on one line of a text file:
# control characters (line breaks, NUL) and Unicode line/paragraph separators.
_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(lambda s: s == s.strip() and not s.startswith("#"))


@given(
    names=st.lists(_NAME, max_size=12),
    junk=st.lists(st.sampled_from(["", "   ", "# c", "  #x", "\t"]), max_size=6),
    data=st.data(),
)
def test_parse_volume_list_round_trips(
    names: list[str], junk: list[str], data: st.DataObject
) -> None:
    """Names written one a line, with comments and blanks anywhere, come back once each."""
    lines = list(names)
    for item in junk:
        lines.insert(data.draw(st.integers(0, len(lines))), item)
    padded = [f"  {line}\t" for line in lines]
    assert parse_volume_list("\n".join(padded), "-") == tuple(dict.fromkeys(names))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("backup=nightly", ("backup", "nightly")),
        ("k=a=b", ("k", "a=b")),
        ("k=", ("k", "")),
        ("os:tier=gold", ("os:tier", "gold")),
        ("my key=my value", ("my key", "my value")),
    ],
)
def test_parse_selector(text: str, expected: tuple[str, str]) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x", "--selector 'x': expected KEY=VALUE"),
        ("", "--selector '': expected KEY=VALUE"),
        ("=v", "--selector '=v': expected KEY=VALUE"),
        ("kéy=v", "--selector 'kéy=v': 'kéy' cannot be a Cinder metadata key"),
        ("k" * 256 + "=v", "cannot be a Cinder metadata key"),
    ],
    ids=["no-equals", "empty", "empty-key", "non-ascii-key", "key-too-long"],
)
def test_parse_selector_refuses(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_selector(text)
    assert message in str(caught.value)
    assert caught.value.hint


def test_selector_mapping_ands_keys_and_refuses_contradictions() -> None:
    assert selector_mapping(["a=1", "b=2", "a=1"]) == {"a": "1", "b": "2"}
    assert selector_mapping([]) == {}
    with pytest.raises(InputError, match="can never both match"):
        selector_mapping(["a=1", "a=2"])


@pytest.mark.parametrize(
    ("refs", "expected"),
    [
        ([], ()),
        (["a"], ("a",)),
        (["b", "a", "b", "c", "a"], ("b", "a", "c")),
        (("x" for _ in range(3)), ("x",)),
    ],
    ids=["none", "one", "order-kept", "generator"],
)
def test_unique_refs(refs: list[str], expected: tuple[str, ...]) -> None:
    assert unique_refs(refs) == expected


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_unique_refs_refuses_blank(blank: str) -> None:
    with pytest.raises(InputError, match="volume reference 2 is blank"):
        unique_refs(["vol-a", blank])
