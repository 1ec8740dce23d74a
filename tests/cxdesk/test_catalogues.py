"""The catalogues are complete and current.

`makemessages` runs on a copy of the project (so the repository is never touched): its
catalogues must equal the ones committed (a string added or changed in code or templates
without updating locale/ fails here), every message of pl/it/fa/ru must be translated (all
plural forms) and none fuzzy, and the compiled .mo files must be current. A second test reads
the templates for visible text outside {% translate %}/{% blocktranslate %}."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
TRANSLATED = ["pl", "it", "fa", "ru"]
# Kept in step with the Makefile's `messages` target (the command that writes locale/).
MAKEMESSAGES = [
    "makemessages", *[f"-l{code}" for code, _name in settings.LANGUAGES], "--no-location", "--no-obsolete",
    "-i", "tests/*", "-i", "bench/*", "-i", "deploy/*", "-i", "scripts/*", "-i", "var/*", "-i", "docs/*",
]  # fmt: skip


def _without_creation_date(text: str) -> str:
    return re.sub(r'"POT-Creation-Date: [^"]*"\n', "", text)


def _entries(po: Path) -> list[dict]:
    """A small .po reader: msgid, plural, msgstr forms and flags of each entry."""
    entries, current, field = [], None, None
    for line in po.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if current is not None:
                entries.append(current)
            current, field = None, None
            continue
        current = current or {"flags": set(), "msgid": "", "plural": None, "msgstr": {}}
        if line.startswith("#,"):
            current["flags"] |= {f.strip() for f in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith("msgid_plural "):
            field, current["plural"] = "plural", _unquote(line[13:])
        elif line.startswith("msgid "):
            field, current["msgid"] = "msgid", _unquote(line[6:])
        elif line.startswith("msgstr"):
            index = int(line[7]) if line.startswith("msgstr[") else 0
            field = ("msgstr", index)
            current["msgstr"][index] = _unquote(line.split(" ", 1)[1])
        elif line.startswith('"'):
            if field == "msgid":
                current["msgid"] += _unquote(line)
            elif field == "plural":
                current["plural"] += _unquote(line)
            else:
                current["msgstr"][field[1]] += _unquote(line)
    return [e for e in entries if e["msgid"]]


def _unquote(value: str) -> str:
    return value.strip()[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")


def _nplurals(po: Path) -> int:
    return int(re.search(r"nplurals=(\d+)", po.read_text(encoding="utf-8")).group(1))


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """The project copied (sources, templates, locale/) and makemessages run in the copy."""
    copy = tmp_path_factory.mktemp("catalogues") / "project"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(".venv", ".git", "var", "node_modules", "*.pyc", "__pycache__", "screenshots"),
        symlinks=True,
    )
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:", "SECRET_KEY": "catalogue-check"}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", *MAKEMESSAGES], cwd=copy, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return copy / "locale"


@pytest.mark.parametrize("language", [code for code, _name in settings.LANGUAGES])
def test_catalogue_matches_what_makemessages_produces(regenerated, language):
    committed = ROOT / "locale" / language / "LC_MESSAGES" / "django.po"
    produced = regenerated / language / "LC_MESSAGES" / "django.po"
    assert committed.exists(), f"no catalogue for {language}: run `make messages`"
    old = {e["msgid"] for e in _entries(committed)}
    new = {e["msgid"] for e in _entries(produced)}
    assert not new - old, f"strings not in locale/{language} (run `make messages` and translate): {sorted(new - old)}"
    assert not old - new, f"strings no longer in the code (run `make messages`): {sorted(old - new)}"
    assert _without_creation_date(produced.read_text()) == _without_creation_date(committed.read_text()), (
        f"locale/{language} is not what makemessages writes (run `make messages`)"
    )


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_and_none_fuzzy(language):
    po = ROOT / "locale" / language / "LC_MESSAGES" / "django.po"
    forms = _nplurals(po)
    entries = _entries(po)
    assert len(entries) > 500
    fuzzy = [e["msgid"] for e in entries if "fuzzy" in e["flags"]]
    assert not fuzzy, f"fuzzy in {language}: {fuzzy}"
    missing = [
        e["msgid"]
        for e in entries
        if not all(e["msgstr"].get(i) for i in range(forms if e["plural"] is not None else 1))
    ]
    assert not missing, f"untranslated in {language}: {missing}"
    # python-format placeholders survive translation (msgfmt --check checks them and plural counts)
    result = subprocess.run(["msgfmt", "--check", "-o", os.devnull, str(po)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("language", [code for code, _name in settings.LANGUAGES])
def test_compiled_catalogue_is_current(language, tmp_path):
    po = ROOT / "locale" / language / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "-o", str(fresh), str(po)], check=True)
    assert mo.exists() and mo.read_bytes() == fresh.read_bytes(), f"run `make messages` ({language} .mo is stale)"


# Visible text a template may show untranslated: the product's name, channel and measure
# abbreviations, ticket references, keyboard keys.
ALLOWED = {"cxdesk", "CX", "SLA", "CSAT", "CES", "Enter"}
# Not part of the product: the demo shop page that embeds the widget (`make run` only).
NOT_PRODUCT = {"demo/shop.html"}


def _visible_text(source: str) -> list[str]:
    source = re.sub(r"\{%\s*(blocktranslate|blocktrans)\b.*?\{%\s*end\1\s*%\}", " ", source, flags=re.S)
    source = re.sub(r"\{%\s*comment\s*%\}.*?\{%\s*endcomment\s*%\}", " ", source, flags=re.S)
    source = re.sub(r"\{%\s*block body_attrs\s*%\}.*?\{%\s*endblock\s*%\}", " ", source, flags=re.S)
    source = re.sub(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", " ", source, flags=re.S)
    source = re.sub(r"<(script|style)\b.*?</\1>", " ", source, flags=re.S)
    found = [m.group(2) for m in re.finditer(r'\b(placeholder|title|aria-label|alt)="([^"]*)"', source)]
    found += re.sub(r"<[^>]*>", "\n", source).split("\n")
    return [t.strip() for t in found if re.search(r"[^\W\d_]{2,}", t) and not _allowed(t)]


def _allowed(text: str) -> bool:
    return all(word in ALLOWED for word in re.findall(r"[^\W\d_]+", text))


def test_templates_have_no_text_outside_translate_tags():
    escaped = {}
    for path in sorted((ROOT / "templates").rglob("*.html")):
        name = str(path.relative_to(ROOT / "templates"))
        if name in NOT_PRODUCT:
            continue
        text = _visible_text(path.read_text(encoding="utf-8"))
        if text:
            escaped[name] = text
    assert not escaped, f"visible text outside {{% translate %}}: {escaped}"


def test_the_text_check_can_fail():
    assert _visible_text('<p>{% translate "Fine" %}</p><p>Not marked</p><input placeholder="Type here">') == [
        "Type here",
        "Not marked",
    ]
    assert _visible_text("<h1>cxdesk · CX-12</h1><kbd>Enter</kbd>") == []
