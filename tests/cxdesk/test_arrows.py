"""The apps' imports point one way (README, "Architecture"): portal → channels_app → tickets
→ customers. tickets reaches an inbox's adapter through the lookup channels_app installs
(tickets/adapter_registry.py), never by importing channels_app; customers' one known exception
(it reads tickets, README) is not checked here, but neither it nor tickets reaches up to
channels_app or portal."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(app: str, root: Path = ROOT) -> list[tuple[str, int, str]]:
    """(file, line, module) of every import in the app's code (at any depth: a function's too)."""
    found = []
    for path in sorted((root / app).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(root)), node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((str(path.relative_to(root)), node.lineno, node.module))
    return found


def _reaching(app: str, upstream: tuple[str, ...], root: Path = ROOT) -> list[tuple[str, int, str]]:
    return [(f, n, m) for f, n, m in _imports(app, root) if m.split(".")[0] in upstream]


def test_tickets_never_imports_channels_app_or_portal():
    assert _imports("tickets"), "the scan reads the app's code"
    assert _reaching("tickets", ("channels_app", "portal")) == []


def test_customers_never_imports_channels_app_or_portal():
    assert _reaching("customers", ("channels_app", "portal")) == []


def test_the_scan_sees_an_import_inside_a_function(tmp_path):
    app = tmp_path / "someapp"
    app.mkdir()
    (app / "views.py").write_text("def f():\n    from channels_app.models import Channel\n    return Channel\n")
    assert _reaching("someapp", ("channels_app",), tmp_path) == [("someapp/views.py", 2, "channels_app.models")]
