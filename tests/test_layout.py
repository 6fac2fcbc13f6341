"""The layout shows the architecture, and stays that way: the classifier knows nothing of helpdesks, the service
or the CLI; the adapters nothing of the classifier, the service or the CLI; the service nothing of the CLI. No
function is too branchy to change safely (radon grade D, cyclomatic complexity above 20)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from radon.complexity import cc_visit

TAGGER = Path(__file__).resolve().parent.parent / "tagger"
FORBIDDEN = {"classifier": ("tagger.service", "tagger.helpdesks", "tagger.cli"),
             "helpdesks": ("tagger.service", "tagger.classifier", "tagger.cli"),
             "service": ("tagger.cli",)}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_each_part_imports_only_the_parts_below_it(part):
    wrong = {f"{p.relative_to(TAGGER)}: {m}" for p in (TAGGER / part).rglob("*.py") for m in _imports(p)
             if m.startswith(FORBIDDEN[part])}
    assert not wrong, sorted(wrong)


def test_the_shared_modules_import_no_part():
    wrong = {f"{name}: {m}" for name in ("labels.py", "errors.py", "config.py") for m in _imports(TAGGER / name)
             if m.startswith(("tagger.classifier", "tagger.helpdesks", "tagger.service", "tagger.cli"))}
    assert not wrong, sorted(wrong)


def test_no_function_is_grade_d_or_worse():
    too_complex = [f"{p.relative_to(TAGGER)}:{block.lineno} {block.fullname} ({block.complexity})"
                   for p in TAGGER.rglob("*.py") for block in cc_visit(p.read_text(encoding="utf-8"))
                   if block.complexity > 20]
    assert not too_complex, too_complex
