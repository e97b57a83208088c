"""README's settings table and topic table keep up with the code."""

from pathlib import Path

from contracts import topics
from service.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    missing = [name.upper() for name in Settings.model_fields if f"| `{name.upper()}` |" not in README]
    assert not missing, f"README settings table lacks {missing}"


def test_every_published_or_consumed_topic_is_in_the_readme() -> None:
    documented = topics.ALL
    assert all(f"`{t}`" in README for t in documented)
