"""The chart's README documents every value, and its values table matches values.yaml."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import yaml

from tests.helm.conftest import CHART, ROOT


def table_script() -> ModuleType:
    path = ROOT / "scripts" / "chart-values-table.py"
    spec = importlib.util.spec_from_file_location("chart_values_table", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_values_table_is_up_to_date() -> None:
    script = table_script()
    readme = (CHART / "README.md").read_text()
    values = (CHART / "values.yaml").read_text()
    assert script.render_readme(readme, values) == readme, (
        "run scripts/chart-values-table.py to regenerate the README's values table"
    )


def test_every_value_key_is_mentioned_in_the_readme() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    paths = table_script().all_paths(values)
    missing = [p for p in paths if f"`{p}`" not in readme and p.rsplit(".", 1)[-1] not in readme]
    assert not missing, missing


def test_every_value_key_has_a_doc_comment() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = {path for path, _ in table_script().documented_keys(text)}
    # A documented key without documented children is documented as a whole (a Kubernetes object
    # such as `resources`, or a map of labels): its own keys need no comment.
    wholes = {p for p in documented if not any(q.startswith(p + ".") for q in documented)}
    for path in table_script().all_paths(yaml.safe_load(text)):
        covered = path in documented or any(path.startswith(w + ".") for w in wholes)
        assert covered, f"values.yaml: {path} has no '# --' comment"


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "inkit-connector"
    assert chart["type"] == "application"
    assert chart["kubeVersion"] == ">=1.25.0-0"
    assert chart["maintainers"]
    init = (ROOT / "connector" / "__init__.py").read_text()
    assert f'__version__ = "{chart["appVersion"]}"' in init, "appVersion follows the package"
    assert not any(Path(CHART, "templates").glob("*.yml"))
