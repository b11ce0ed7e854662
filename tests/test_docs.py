"""README.md and docs/*.md point at what exists: every relative link (and its anchor), every
repository path and `make` target named in their code, and the README opens with the two
commands a new user runs."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]

FENCED = re.compile(r'^```.*?^```', re.M | re.S)
INLINE_CODE = re.compile(r'`([^`]+)`')  # may wrap onto the next line
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
HEADING = re.compile(r'^#{1,6} +(.+?) *$', re.M)
# Repository paths as commands name them, from the repository's root; `--out PREFIX` names
# something a command writes, not something that must exist.
PATH = re.compile(r'(?<![\w./-])(?<!--out )'
                  r'(?:\.ci/run|(?:tools|configs|mmambaout|tests|requirements|docs)/[\w./{},*-]*)')
MAKE = re.compile(r'(?<![\w$(])make ([a-z][\w-]*)')
MAKE_TARGET = re.compile(r'^([\w-]+):(?!=)', re.M)


def code(text: str) -> str:
    """The fenced blocks and inline code spans of a Markdown text, one per line."""
    blocks = FENCED.findall(text)
    return '\n'.join(blocks + INLINE_CODE.findall(FENCED.sub('', text)))


def prose(text: str) -> str:
    """A Markdown text without its code, where links are."""
    return INLINE_CODE.sub('', FENCED.sub('', text))


def anchors(markdown: Path) -> set:
    """GitHub's anchors for the headings: lower case, punctuation dropped, spaces to hyphens,
    -1, -2... for repeats."""
    seen, found = {}, set()
    for title in HEADING.findall(FENCED.sub('', markdown.read_text())):
        slug = re.sub(r'[^\w\- ]', '', title.lower()).replace(' ', '-')
        found.add(f'{slug}-{seen[slug]}' if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def brace_expand(pattern: str) -> list:
    """'a{b,c}d' -> ['abd', 'acd'], as the shell does ('x{,_y}' -> ['x', 'x_y'])."""
    match = re.search(r'\{([^{}]*)\}', pattern)
    if match is None:
        return [pattern]
    return [expanded for alternative in match.group(1).split(',')
            for expanded in brace_expand(pattern[:match.start()] + alternative +
                                         pattern[match.end():])]


def where(doc: Path) -> str:
    return str(doc.relative_to(REPO))


def test_docs_are_found():
    names = {where(doc) for doc in DOCS}
    assert {'README.md', 'docs/install.md', 'docs/usage.md'} <= names, names


def test_relative_links_and_anchors_exist():
    checked, broken = 0, []
    for doc in DOCS:
        for target in LINK.findall(prose(doc.read_text())):
            if re.match(r'[a-z]+:', target):  # https:, mailto:
                continue
            checked += 1
            path, _, anchor = target.partition('#')
            linked = (doc.parent / path).resolve() if path else doc
            if not linked.exists():
                broken.append(f'{where(doc)}: link {target!r}: no file {linked}')
            elif anchor and (linked.suffix != '.md' or anchor not in anchors(linked)):
                broken.append(f'{where(doc)}: link {target!r}: no heading with anchor '
                              f'#{anchor} in {where(linked)}')
    assert checked > 0
    assert not broken, '\n'.join(broken)


def test_named_paths_exist():
    checked, missing = 0, []
    for doc in DOCS:
        for named in PATH.findall(code(doc.read_text())):
            named = named.rstrip('.,')
            for path in brace_expand(named):
                checked += 1
                if not any(REPO.glob(path.rstrip('/'))):
                    missing.append(f'{where(doc)}: {named!r} names {path}, which does not exist')
    assert checked > 0
    assert not missing, '\n'.join(missing)


def test_make_targets_exist():
    targets = set(MAKE_TARGET.findall((REPO / 'Makefile').read_text()))
    named = {(where(doc), target) for doc in DOCS for target in MAKE.findall(code(doc.read_text()))}
    assert named
    unknown = [f'{doc}: make {target}' for doc, target in sorted(named) if target not in targets]
    assert not unknown, f'no such Makefile target ({sorted(targets)}):\n' + '\n'.join(unknown)


def test_readme_opens_with_make_demo_and_make_test():
    readme = (REPO / 'README.md').read_text()
    opening = re.match(r'# [^\n]+\n+```\w*\n(.*?)^```', readme, re.M | re.S)
    assert opening, 'README.md must open with its title, then a code block of the first commands'
    commands = [line.split('#')[0].strip() for line in opening.group(1).splitlines()]
    assert [c for c in commands if c][:2] == ['make demo', 'make test'], opening.group(1)
