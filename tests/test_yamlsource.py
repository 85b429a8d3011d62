"""Positions inside YAML strings: every character of a scalar maps back to its place in the file."""

from __future__ import annotations

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from crmcore.rules.diagnostics import SourceFile
from crmcore.rules.yamlsource import load_yaml

TEXT = st.text(alphabet=st.sampled_from("abcXYZ019 ._'\"\\<>=()[]:#-é"), min_size=1, max_size=60).filter(lambda s: s.strip() == s)
STYLES = st.sampled_from([None, "'", '"', "|", ">"])


@given(TEXT, STYLES, st.integers(10, 80))
@example('client.x "q" == 1', '"', 80)
@example("it's here", "'", 80)
@example("a" * 30 + " " + "b" * 30, None, 20)
def test_every_character_maps_to_itself_in_the_file(value: str, style: str | None, width: int) -> None:
    text = yaml.dump({"rules": [{"when": value}]}, default_style=style, width=width, allow_unicode=True)
    if style in ("|", ">"):
        words = value.split(" ")
        lines = [" ".join(words[i : i + 3]) for i in range(0, len(words), 3)]  # several lines, one indentation
        text = f"rules:\n- when: {style}-\n" + "".join(f"    {line}\n" for line in lines)
    source = SourceFile("f.yaml", text)
    document, problems = load_yaml(source)
    if document is None:  # the block could not hold this text (e.g. a line starting with '#')
        return
    assert not problems
    loaded = document.data["rules"][0]["when"]
    origin = document.origin(("rules", 0, "when"), loaded)
    assert len(origin.offsets) == len(loaded)
    for i, ch in enumerate(loaded):
        found = text[origin.offsets[i]]
        if style == '"' and found == "\\":
            continue  # an escape sequence points at its backslash
        if ch in " \n":  # a folded break stands for a space
            assert found in " \n"
        else:
            assert found == ch, (i, ch, text)
    assert origin.offsets == sorted(origin.offsets)
