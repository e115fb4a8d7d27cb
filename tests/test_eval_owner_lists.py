"""The owners' `string_to_list`: every edge case pinned to what their rule gives, worked by hand."""

import math

import numpy as np
import pytest

from minigpt4.eval.owner_lists import string_to_list


@pytest.mark.parametrize(
    "text, expected",
    [
        ("['happy', 'surprised']", ["happy", "surprised"]),  # the usual Python-list cell
        ("[happy, surprised]", ["happy", "surprised"]),  # no quotes (stage-1 LLM output)
        ("['happy', \"sad\", angry]", ["happy", "sad", "angry"]),  # mixed quotes, one bare
        ("[\"can't stand it\"]", ["can", "t stand it"]),  # an apostrophe inside a word splits
        ("[happy; sad]", ["happy; sad"]),  # a semicolon does not split
        ("[happy and sad]", ["happy and sad"]),  # nor does "and"
        ("[]", []),
        ("[", []),  # a lone bracket
        ("]", []),
        ("", []),
        ("['Happy', ' SAD ']", ["happy", "sad"]),  # lower-cased and stripped
        ("happy, sad", ["happy", "sad"]),  # no brackets at all
        ("[[happy]]", ["[happy]"]),  # only ONE bracket is dropped on each side
        (" [happy]", ["[happy"]),  # no strip before the bracket check, as the owners'
        ("[happy,, ,'' sad]", ["happy", "sad"]),  # empty pieces dropped
    ],
)
def test_string_to_list_owner_rule(text, expected):
    assert string_to_list(text) == expected


def test_string_to_list_non_text_inputs():
    assert string_to_list(None) == []
    assert string_to_list(math.nan) == []  # an empty CSV cell read by pandas
    assert string_to_list(["Happy", "sad"]) == ["happy", "sad"]  # a list is taken as it is
    assert string_to_list(np.array("[Happy, sad]")) == ["happy", "sad"]  # a 0-d array from an npz cache
    assert string_to_list(np.array(["Happy"])) == ["happy"]
    with pytest.raises(TypeError, match="label list written as text"):
        string_to_list(3)
