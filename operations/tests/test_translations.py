"""The Simplified Chinese catalogs are complete, compiled from the current .po files, and used.

The .po files are parsed here rather than with a library, so the checks run without gettext
installed; msgfmt, when present, adds its own format check on top.
"""

from __future__ import annotations

import ast
import gettext
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from articles.models import Article
from taskconsole.models import TaskRecord, TaskStatus

ROOT = Path(settings.BASE_DIR)
EXPECTED = [
    ROOT / "locale/zh_Hans/LC_MESSAGES/django.po",
    ROOT / "taskconsole/locale/zh_Hans/LC_MESSAGES/django.po",
]
CATALOGS = sorted(
    {*ROOT.glob("locale/*/LC_MESSAGES/*.po"), *ROOT.glob("taskconsole/locale/*/LC_MESSAGES/*.po")}
)
IDS = [str(path.relative_to(ROOT)) for path in CATALOGS]

# What a translation must carry over unchanged: %(name)s, %s/%d, {name}, and HTML tags.
PLACEHOLDER = re.compile(r"%\([A-Za-z_]\w*\)[-#0 +]*\d*(?:\.\d+)?[sdifrx]|%[sdif]|\{[A-Za-z_]\w*\}")
TAG = re.compile(r"</?[A-Za-z][^>]*>")


@dataclass
class Entry:
    line: int
    msgctxt: str | None = None
    msgid: str = ""
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


def parse_po(path: Path) -> list[Entry]:
    """Entries of a .po file, header first; obsolete (#~) entries are left out."""
    entries: list[Entry] = []
    entry: Entry | None = None
    target: tuple[str, int | None] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            if not line and entry is not None:
                entries.append(entry)
                entry, target = None, None
            continue
        if entry is None:
            entry = Entry(line=number)
        if line.startswith("#,"):
            entry.flags.update(flag.strip() for flag in line[2:].split(","))
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            assert target is not None, f"{path}:{number}: continuation without a keyword"
            _append(entry, target, ast.literal_eval(line))
        else:
            keyword, _, value = line.partition(" ")
            match = re.fullmatch(r"msgstr\[(\d+)\]", keyword)
            if match:
                target = ("msgstr", int(match.group(1)))
            elif keyword in {"msgctxt", "msgid", "msgid_plural", "msgstr"}:
                target = (keyword, None)
            else:
                raise AssertionError(f"{path}:{number}: unexpected line {raw!r}")
            _set(entry, target, ast.literal_eval(value))
    if entry is not None:
        entries.append(entry)
    return entries


def _set(entry: Entry, target: tuple[str, int | None], value: str) -> None:
    name, index = target
    if name == "msgstr":
        entry.msgstr[index if index is not None else 0] = value
    else:
        setattr(entry, name, value)


def _append(entry: Entry, target: tuple[str, int | None], value: str) -> None:
    name, index = target
    if name == "msgstr":
        key = index if index is not None else 0
        entry.msgstr[key] += value
    else:
        setattr(entry, name, getattr(entry, name) + value)


def messages(path: Path) -> list[Entry]:
    entries = parse_po(path)
    assert entries[0].msgid == "", f"{path} has no header entry"
    return entries[1:]


def test_both_catalogs_exist() -> None:
    assert set(EXPECTED) <= set(CATALOGS)
    for path in EXPECTED:
        assert len(messages(path)) > 100


@pytest.mark.parametrize("path", CATALOGS, ids=IDS)
def test_header_names_the_language_and_its_single_plural_form(path: Path) -> None:
    header = parse_po(path)[0]
    assert "fuzzy" not in header.flags
    assert "Language: zh_Hans\n" in header.msgstr[0]
    assert "Plural-Forms: nplurals=1; plural=0;\n" in header.msgstr[0]
    assert "charset=UTF-8" in header.msgstr[0]


@pytest.mark.parametrize("path", CATALOGS, ids=IDS)
def test_every_message_is_translated_and_none_is_fuzzy(path: Path) -> None:
    fuzzy = [f"{path.name}:{e.line} {e.msgid!r}" for e in messages(path) if "fuzzy" in e.flags]
    empty = [
        f"{path.name}:{e.line} {e.msgid!r}"
        for e in messages(path)
        if not e.msgstr or any(not text for text in e.msgstr.values())
    ]
    assert fuzzy == []
    assert empty == []


@pytest.mark.parametrize("path", CATALOGS, ids=IDS)
def test_plural_messages_have_exactly_one_form(path: Path) -> None:
    wrong = [e.msgid for e in messages(path) if e.msgid_plural and set(e.msgstr) != {0}]
    assert wrong == []


@pytest.mark.parametrize("path", CATALOGS, ids=IDS)
def test_translations_keep_placeholders_and_html_tags(path: Path) -> None:
    broken = []
    for e in messages(path):
        source = e.msgid_plural or e.msgid
        for text in e.msgstr.values():
            if sorted(PLACEHOLDER.findall(text)) != sorted(PLACEHOLDER.findall(source)):
                broken.append(f"{path.name}:{e.line} placeholders in {e.msgid!r}")
            if sorted(TAG.findall(text)) != sorted(TAG.findall(source)):
                broken.append(f"{path.name}:{e.line} tags in {e.msgid!r}")
    assert broken == []


@pytest.mark.parametrize("path", CATALOGS, ids=IDS)
def test_compiled_catalog_matches_the_po_file(path: Path) -> None:
    """A stale .mo (compilemessages not run after editing the .po) fails here."""
    mo = path.with_suffix(".mo")
    assert mo.exists(), f"{mo} is missing: run manage.py compilemessages"
    with mo.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for e in messages(path):
        if e.msgid_plural:
            got = (
                compiled.npgettext(e.msgctxt, e.msgid, e.msgid_plural, 1)
                if e.msgctxt
                else compiled.ngettext(e.msgid, e.msgid_plural, 1)
            )
        else:
            got = compiled.pgettext(e.msgctxt, e.msgid) if e.msgctxt else compiled.gettext(e.msgid)
        if got != e.msgstr[0]:
            stale.append(e.msgid)
    assert stale == [], f"{mo} is older than {path.name}: run manage.py compilemessages"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="gettext's msgfmt is not installed")
@pytest.mark.parametrize("path", CATALOGS, ids=IDS)
def test_msgfmt_accepts_the_catalog(path: Path) -> None:
    run = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", os.devnull, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "translated message" in run.stderr
    assert "untranslated" not in run.stderr
    assert "fuzzy" not in run.stderr


@pytest.mark.django_db
def test_home_page_follows_the_browser_language(client) -> None:
    chinese = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    english = client.get("/", HTTP_ACCEPT_LANGUAGE="en")

    assert chinese.status_code == 200
    assert '<html lang="zh-hans">' in chinese.content.decode()
    assert "使用 Celery 执行异步和周期性任务" in chinese.content.decode()
    assert "Async and periodic tasks with Celery" not in chinese.content.decode()
    assert "Async and periodic tasks with Celery" in english.content.decode()


@pytest.mark.django_db
def test_the_language_chosen_in_the_switcher_sticks(client) -> None:
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})

    response = client.get("/", HTTP_ACCEPT_LANGUAGE="en")

    assert "周期性任务" in response.content.decode()


def test_broker_unavailable_page_renders_in_chinese() -> None:
    with translation.override("zh-hans"):
        html = render_to_string("operations/broker_unavailable.html")

    assert "<title>消息代理不可用</title>" in html
    assert "消息代理（Redis 或 RabbitMQ）没有响应" in html
    assert "<code>python manage.py celery_check</code>" in html


def test_model_names_and_choices_translate() -> None:
    with translation.override("zh-hans"):
        assert str(Article._meta.verbose_name) == "文章"
        assert str(TaskRecord._meta.verbose_name_plural) == "任务记录"
        assert str(TaskStatus.REVOKED.label) == "已撤销"
    with translation.override("en"):
        assert str(Article._meta.verbose_name) == "article"
        assert str(TaskStatus.REVOKED.label) == "Revoked"


@pytest.mark.django_db
def test_task_console_and_its_launch_form_render_in_chinese(client, django_user_model) -> None:
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x"))

    index = client.get("/console/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    launch = client.get("/console/launch/app.tasks.add/", HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert "任务控制台" in index
    assert "周期性任务" in index
    # Labels declared lazily on the task's pydantic schema are translated per request.
    assert "两数相加" in launch.content.decode()
    assert "第一个数" in launch.content.decode()


@pytest.mark.parametrize("path", EXPECTED, ids=[str(p.relative_to(ROOT)) for p in EXPECTED])
def test_no_other_catalog_takes_a_message_over(path: Path) -> None:
    """Django looks a message up in every catalog, the project's, its apps' (the admin's
    among them) and its own, and the first that has it wins: a bare "Filter" read 过滤器, the
    admin's, on the console. A message that means something else here carries a context."""
    language = path.parts[-3].lower().replace("_", "-")
    taken = []
    with translation.override(language):
        for e in messages(path):
            if e.msgid_plural:
                continue
            got = (
                translation.pgettext(e.msgctxt, e.msgid)
                if e.msgctxt
                else translation.gettext(e.msgid)
            )
            if got != e.msgstr[0]:
                taken.append((e.msgid, got))
    assert taken == []
