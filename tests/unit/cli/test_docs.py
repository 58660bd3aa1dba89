"""The README's configuration and metrics tables are the code's: a renamed metric or a new
setting fails here until `python -m connector.cli.docs` regenerates them."""

from prometheus_client import CollectorRegistry, generate_latest

from connector.cli.docs import README, render
from connector.observability.metrics import Metrics
from connector.settings import SETTINGS


def test_readme_tables_are_up_to_date() -> None:
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README.md tables are stale: run `python -m connector.cli.docs`"


def test_every_exported_metric_and_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    exposition = generate_latest(Metrics(CollectorRegistry()).registry).decode()
    families = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE")}
    for family in families:
        if family.endswith("_created"):
            continue  # prometheus-client's per-series creation time, not ours
        assert f"`{family}`" in text, f"{family} is exported but not documented"
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text
