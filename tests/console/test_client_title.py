"""The case page's heading names the client once: a title staff typed into the name is not doubled."""

from __future__ import annotations

import pytest

from api.console.routes import client_title
from domain.enums import Gender


@pytest.mark.parametrize(
    ("name", "gender", "heading"),
    [
        ("王伟", Gender.male, "王伟先生"),
        ("李娜", Gender.female, "李娜女士"),
        ("赵女士", Gender.female, "赵女士"),  # typed with the title: as typed, not 赵女士女士
        ("王先生", Gender.male, "王先生"),
        ("周小姐", Gender.female, "周小姐"),
        ("陈静", Gender.unknown, "陈静"),  # no guess
    ],
)
def test_the_heading_names_the_client_once(name: str, gender: Gender, heading: str) -> None:
    assert client_title(name, gender) == heading
