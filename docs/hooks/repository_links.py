"""MkDocs hook: links between the docs, the README and the rest of the repository.

The pages link to each other and to the rest of the repository (``../deploy/README.md``,
``../README.md#development``) with relative paths, and the README links into ``docs/``
the same way, so every link works where most readers meet it: on GitHub, file by file.
MkDocs checks links between pages (and their anchors, as MkDocs writes them), but knows
nothing of the README, and reports links outside ``docs/`` as not found.

This hook, run by the strict build (``make docs``), adds what is missing. Each problem is a
warning, which ``--strict`` turns into a failed build:

- a relative link from a page to a file outside ``docs/`` must name a file or directory of
  the repository, and is rewritten to the same path under ``repo_url`` on the built site
  (``blob/main/...`` for a file, ``tree/main/...`` for a directory);
- every relative link of ``README.md`` must name a file or directory of the repository;
- an anchor in a link to a Markdown file, from a page or from the README, must be one that
  GitHub makes for a heading of that file (MkDocs checks its own anchors of pages too).

Absolute URLs are left alone.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from mkdocs.plugins import get_plugin_logger

log = get_plugin_logger(__name__)

BRANCH = "main"
README = "README.md"
# An inline Markdown link or image target: ](target) or ](target "title").
LINK = re.compile(r"\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def outside_fences(markdown: str) -> list[tuple[bool, str]]:
    """The lines of ``markdown`` (ends kept), each with whether it is prose (not code).

    Brackets inside fenced code blocks are code, not links or headings.
    """
    lines, in_fence = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            in_fence = not in_fence
            lines.append((False, line))
        else:
            lines.append((not in_fence, line))
    return lines


@cache
def github_anchors(path: Path) -> frozenset[str]:
    """The anchors GitHub gives the headings of the Markdown file at ``path``.

    GitHub keeps a heading's text without its markup, lower-cased, drops what is neither a
    word character, a hyphen nor a space, turns spaces into hyphens, and numbers repeats
    (``-1``, ``-2``).
    """
    anchors: set[str] = set()
    for prose, line in outside_fences(path.read_text(encoding="utf-8")):
        match = HEADING.match(line.rstrip("\n")) if prose else None
        if not match:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match["text"])  # a link: its text
        text = re.sub(r"[`*]", "", text).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        anchor, repeat = slug, 0
        while anchor in anchors:
            repeat += 1
            anchor = f"{slug}-{repeat}"
        anchors.add(anchor)
    return frozenset(anchors)


def check_target(target: str, source: Path, repo: Path) -> Path | None:
    """Where the relative link ``target`` of the file ``source`` points, once checked.

    ``None`` (after a warning) when it leaves the repository, names nothing, or names an
    anchor GitHub does not make in the Markdown file it points at.
    """
    path, _, fragment = target.partition("#")
    resolved = (source.parent / path).resolve() if path else source
    where = source.relative_to(repo)
    if not resolved.is_relative_to(repo) or not resolved.exists():
        log.warning("%s: link %r names nothing in the repository", where, target)
        return None
    if fragment and resolved.suffix == ".md" and fragment not in github_anchors(resolved):
        log.warning("%s: link %r: no heading there has that anchor on GitHub", where, target)
        return None
    return resolved


def on_pre_build(config: Any) -> None:
    """Forget the headings read by an earlier build (``mkdocs serve`` rebuilds on edits)."""
    github_anchors.cache_clear()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Check the page's relative links; point those leaving ``docs/`` at ``repo_url``."""
    docs_dir = Path(config["docs_dir"]).resolve()
    repo = Path(config["config_file_path"]).resolve().parent
    repo_url = (config["repo_url"] or "").rstrip("/")
    if not repo_url:
        log.warning("repo_url is not set in mkdocs.yml: links outside docs/ cannot point anywhere")
    source = docs_dir / page.file.src_path

    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        if SCHEME.match(target) or target.startswith("/"):
            return match[0]
        resolved = check_target(target, source, repo)
        if resolved is None or resolved.is_relative_to(docs_dir) or not repo_url:
            return match[0]  # a link within the site: MkDocs writes it
        kind = "tree" if resolved.is_dir() else "blob"
        url = f"{repo_url}/{kind}/{BRANCH}/{PurePosixPath(resolved.relative_to(repo).as_posix())}"
        fragment = target.partition("#")[2]
        return f"]({url}{'#' + fragment if fragment else ''}{match['title'] or ''})"

    return "".join(
        LINK.sub(replace, line) if prose else line for prose, line in outside_fences(markdown)
    )


def on_post_build(config: Any) -> None:
    """Check the README's relative links: the README is not part of the site."""
    repo = Path(config["config_file_path"]).resolve().parent
    readme = repo / README
    for prose, line in outside_fences(readme.read_text(encoding="utf-8")):
        for match in LINK.finditer(line) if prose else ():
            if not SCHEME.match(match["target"]):
                check_target(match["target"], readme, repo)
