"""The documents made from the registry stay in step with the code: docs/tasks.md, and every task's
shipped default YAML against its params dataclass."""
from pathlib import Path

import pytest
import yaml

from pretextgen.config import params_to_dict
from pretextgen.docs import COMMAND, default_yaml, render_tasks, yaml_problems
from pretextgen.registry import get_task, list_tasks

ROOT = Path(__file__).resolve().parents[1]


def test_tasks_reference_is_current():
    path = ROOT / "docs" / "tasks.md"
    assert path.exists(), f"docs/tasks.md is missing: run `{COMMAND}`"
    stored, rendered = path.read_text().splitlines(), render_tasks().splitlines()
    first = next((i for i, (a, b) in enumerate(zip(stored, rendered)) if a != b), min(len(stored), len(rendered)))
    assert stored == rendered, (
        f"docs/tasks.md differs from what the registry renders (first at line {first + 1}: "
        f"{(stored[first:first + 1] or ['<end>'])[0]!r} vs {(rendered[first:first + 1] or ['<end>'])[0]!r}); "
        f"rerun `{COMMAND}` and commit the result")


def test_tasks_reference_covers_every_task_param_and_field():
    text = render_tasks()
    for name in list_tasks():
        t = get_task(name)
        section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for key in params_to_dict(t.params()):
            assert f"| `{key}` |" in section, f"{name}: parameter {key} missing from its section"
        for f in t.fields:
            assert f"`<key>.{f.name}.{f.ext}`" in section, f"{name}: field {f.name} missing from its section"


@pytest.mark.parametrize("name", list_tasks())
def test_default_yaml_holds_exactly_the_dataclass_defaults(name):
    """Every field present with exactly its default (type included), and no other key: the shipped
    YAML is hand-written for its comments, so this is what keeps it from being a stale copy."""
    problems = yaml_problems(get_task(name))
    assert not problems, "; ".join(problems) + " (pretextgen.docs.default_yaml renders the expected lines)"


@pytest.mark.parametrize("name", list_tasks())
def test_rendered_default_yaml_loads_as_the_defaults(name):
    t = get_task(name)
    assert yaml.safe_load(default_yaml(t)) == params_to_dict(t.params())


def test_yaml_problems_names_missing_extra_and_different_keys(tmp_path, monkeypatch):
    import pretextgen.docs as docs

    t = get_task("rotation")
    bad = tmp_path / "rotation.yaml"
    bad.write_text("size: 224.0\ncrop_scale: [0.6, 1.0]\nall_rotations: false\nextra: 1\n")
    monkeypatch.setattr(docs, "default_config_path", lambda name: bad)
    problems = docs.yaml_problems(t)
    assert any("missing `min_side: 32`" in p for p in problems)
    assert any("`extra` is not a field" in p for p in problems)
    assert any("`size: 224.0` differs" in p for p in problems)
    assert len(problems) == 3
