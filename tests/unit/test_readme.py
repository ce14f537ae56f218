"""The README's configuration table is generated from the settings model."""

from __future__ import annotations

from pathlib import Path

from shoal.config import settings_table

README = Path(__file__).parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings_model() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("-->\n", text.index("<!-- settings-table")) + len("-->\n")
    end = text.index("<!-- /settings-table -->")
    assert text[start:end] == settings_table(), (
        "README's configuration table is stale; replace it with shoal.config.settings_table()"
    )
