"""Other trackers' markup as Markdown: Jira's wiki notation and Trac's WikiFormatting.

Both converters handle what issue text mostly holds (emphasis, monospace,
code blocks, headings, lists, links, quotes) and leave anything else as
written: an unconverted construct still reads as text, while a wrong
conversion would change what someone wrote. Code blocks are cut out first
and put back verbatim, so nothing inside them is converted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from urllib.parse import quote

from bugless_core.issue_references import ISSUE_REFERENCE

#: What stands in for a cut-out piece: its pass's kind and number. Each pass
#: has its own kind, so that putting one pass's pieces back cannot take
#: another's place holders for its own (a code block came back as the inline
#: code after it when both were ``CODE0``).
_FENCE = "\x00{}{}\x00"


def _protect(
    text: str, pattern: re.Pattern[str], render: Callable[[re.Match[str]], str], kind: str
) -> tuple[str, list[str]]:
    blocks: list[str] = []

    def keep(match: re.Match[str]) -> str:
        blocks.append(render(match))
        return _FENCE.format(kind, len(blocks) - 1)

    return pattern.sub(keep, text), blocks


def _restore(text: str, blocks: list[str], kind: str) -> str:
    for n, block in reversed(list(enumerate(blocks))):  # CODE12 before CODE1
        text = text.replace(_FENCE.format(kind, n), block)
    return text


# ---- references to the source's issues ----

#: A Markdown link or image, ``[label](url)``: the innermost brackets (no
#: ``[`` in the label) and a URL up to the first ``)`` that is not past another
#: ``](``. Each ``[`` thus scans to the next ``[`` or ``](`` at most, so a run of
#: ``[`` (or of ``[](``) is linear, not a scan to the line's end from each one:
#: ``"[" * 50000`` took 28 s (a source's comment may be 64 KiB).
_MD_LINK = r"!?\[[^\[\]\n]*\]\((?:[^)\]\n]|\](?!\())*\)"
#: What a reference in it is left alone in: a fenced block, inline code, a link.
_MD_KEPT = re.compile(
    r"^(?P<fence>```|~~~).*?^(?P=fence)[^\n]*$"
    r"|`[^`\n]+`"
    r"|" + _MD_LINK + r"|<[a-z]+:[^<>\s]+>",
    re.S | re.M | re.I,
)


def cite_source_issues(text: str, url_of: Callable[[str], str]) -> str:
    """Link what bugless would read as its own issue (``#12``, ``issue 12``) to the source's.

    In imported Markdown the number is the source's: left alone, the web
    would link Trac's ``#12`` to bugless issue 12, an unrelated one. It
    becomes ``[#12](<url_of("12")>)``: the import's ``url_of`` is
    :meth:`~bugless_core.importer.Importer.reference_link`, bugless's own
    page that finds the issue imported as ``trac:12`` (so the link outlives
    the source tracker). Code and existing links are left as written; with no
    URL for a number (``url_of`` returns "") the text is kept.
    """
    text, kept = _protect(text, _MD_KEPT, lambda m: m.group(0), "KEPT")

    def cite(match: re.Match[str]) -> str:
        url = url_of(match.group(1))
        return f"[{match.group(0)}]({url})" if url else match.group(0)

    text = ISSUE_REFERENCE.sub(cite, text)
    return _restore(text, kept, "KEPT")


# ---- Jira ----

# Every pattern that starts at a "[" or "{" stops its scans at the next one
# (innermost brackets), so that a long run of them is linear; as written
# before, each one scanned to the line's (or text's) end: quadratic.
_JIRA_CODE_START = re.compile(r"\{(code|noformat)(?::([^{}]*))?\}")
_JIRA_HEADING = re.compile(r"^h([1-6])\.\s+", re.M)
_JIRA_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_JIRA_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_JIRA_MONO = re.compile(r"\{\{(.+?)\}\}")
#: A line up to its last "}}": a "{{" after that closes nothing, yet each one
#: there would scan to the line's end (``{`` repeated: quadratic).
_JIRA_MONO_SPAN = re.compile(r"^[^\n]*\}\}", re.M)
_JIRA_STRIKE = re.compile(r"(?<![\w-])-(?=\S)([^-\n]+?)(?<=\S)-(?![\w-])")
_JIRA_LINK = re.compile(r"\[([^\[|\]\n]+)\|([^\[\]\n]+)\]")
_JIRA_BARE_LINK = re.compile(r"\[((?:https?|mailto):[^\[\]\s]+)\]")
_JIRA_NUMBERED = re.compile(r"^(#+)\s+", re.M)
_JIRA_BULLET = re.compile(r"^(\*+)\s+", re.M)
_JIRA_QUOTE = re.compile(r"^bq\.\s+", re.M)
_JIRA_MENTION = re.compile(r"\[~([^\[\]]+)\]")


def _jira_code(kind: str, parameters: str, body: str) -> str:
    language = ""
    if kind == "code" and parameters:
        language = parameters.split("|", maxsplit=1)[0].rsplit("=", maxsplit=1)[-1].strip()
    body = body.strip("\n")
    return f"\n```{language}\n{body}\n```\n"


def _jira_code_blocks(text: str) -> tuple[str, list[str]]:
    """``{code}...{code}`` and ``{noformat}...{noformat}`` cut out (:func:`_protect`).

    Each block ends at the first closing tag of its kind after it. A scan,
    not one pattern (the tag, then ``(.*?)`` up to its closing tag): each
    opening tag without a closing one after it scanned to the text's end, so
    ``{code:a}`` repeated was quadratic. Once a kind has no closing tag after
    some point, no later opening tag of it is looked for again.
    """
    blocks: list[str] = []
    out: list[str] = []
    kept = start = 0
    unclosed: dict[str, int] = {}  # kind -> from where the text has no closing tag
    while opening := _JIRA_CODE_START.search(text, start):
        kind = opening.group(1)
        closed_until = unclosed.get(kind, len(text) + 1)
        end = text.find("{" + kind + "}", opening.end()) if opening.end() < closed_until else -1
        if end < 0:
            unclosed[kind] = min(opening.end(), closed_until)
            start = opening.start() + 1
            continue
        out.append(text[kept : opening.start()])
        blocks.append(_jira_code(kind, opening.group(2) or "", text[opening.end() : end]))
        out.append(_FENCE.format("CODE", len(blocks) - 1))
        kept = start = end + len(kind) + 2
    out.append(text[kept:])
    return "".join(out), blocks


def jira_to_markdown(text: str) -> str:
    """Jira wiki notation (REST API v2 text fields) as Markdown."""
    text, blocks = _jira_code_blocks(text)
    text = _JIRA_BULLET.sub(lambda m: "  " * (len(m.group(1)) - 1) + "- ", text)
    text = _JIRA_NUMBERED.sub(lambda m: "   " * (len(m.group(1)) - 1) + "1. ", text)
    text = _JIRA_HEADING.sub(lambda m: "#" * int(m.group(1)) + " ", text)
    text = _JIRA_QUOTE.sub("> ", text)
    text = _JIRA_MONO_SPAN.sub(
        lambda span: _JIRA_MONO.sub(lambda m: f"`{m.group(1)}`", span.group(0)), text
    )
    text = _JIRA_BOLD.sub(r"**\1**", text)
    text = _JIRA_ITALIC.sub(r"*\1*", text)
    text = _JIRA_STRIKE.sub(r"~~\1~~", text)
    text = _JIRA_MENTION.sub(r"@\1", text)
    text = _JIRA_LINK.sub(r"[\1](\2)", text)
    text = _JIRA_BARE_LINK.sub(r"<\1>", text)
    return _restore(text, blocks, "CODE")


# ---- Trac ----

_TRAC_CODE = re.compile(r"\{\{\{\n?(?:#!(\w+)\n)?(.*?)\}\}\}", re.S)
_TRAC_HEADING = re.compile(r"^(={1,6})\s+(.+?)\s+=*\s*$", re.M)
_TRAC_BOLD_ITALIC = re.compile(r"'''''(.+?)'''''")
_TRAC_BOLD = re.compile(r"'''(.+?)'''")
_TRAC_ITALIC = re.compile(r"''(.+?)''")
_TRAC_MONO = re.compile(r"`([^`\n]+)`")
_TRAC_LINK = re.compile(r"\[((?:https?|mailto|ftp):[^\s\[\]]+)\s+([^\[\]]+)\]")
_TRAC_TICKET = re.compile(r"(?<!!)\[ticket:(\d+)(?:\s+([^\[\]]+))?\]")


def _trac_code(match: re.Match[str]) -> str:
    body = match.group(2)
    if "\n" not in body.strip("\n"):
        return f"`{body}`" if "\n" not in match.group(0) else f"\n```\n{body.strip(chr(10))}\n```\n"
    return f"\n```{match.group(1) or ''}\n{body.strip(chr(10))}\n```\n"


#: Where an attachment a text names is linked: (realm, id, file name, raw)
#: -> URL, or "" (kept as code). Realm and id are "" for the text's own
#: ticket; ``raw`` for ``raw-attachment:`` (the file, not Trac's page of it).
AttachmentLink = Callable[[str, str, str, bool], str]


def _no_attachment(realm: str, resource: str, name: str, raw: bool) -> str:
    del realm, resource, name, raw
    return ""


def trac_to_markdown(
    text: str,
    trac_url: str = "",
    wiki_pages: Container[str] = frozenset(),
    attachment_link: AttachmentLink = _no_attachment,
) -> str:
    """Trac WikiFormatting (tickets' descriptions and comments) as Markdown.

    ``trac_url`` is the old Trac's base URL (``https://trac.example.org/rocket``):
    its changesets, wiki pages, reports and milestones (``[changeset:abc]``,
    ``r123``, ``wiki:Page``, ``report:4``, ``milestone:1.0``) link there, where
    the old Trac (read-only) or the repository browser still answers. Without
    it they are kept as code: text someone wrote, not markup that reads as
    broken (``[wiki:Page the page]``). Attachments (``attachment:f.txt``,
    ``attachment:f.txt:ticket:12``, ``[[Image(f.png)]]``) link where
    ``attachment_link`` says (the importer knows which files exist and were
    copied), else are code. What has nowhere to lead is code whatever the
    URL: ``diff:``, InterTrac's ``trac:#123``, other macros (``[[TOC]]``)
    and MoinMoin's ``["free link"]``.
    """
    text = text.replace("\r\n", "\n")
    # Nothing after the last "}}}" opens a block: each "{{{" there would
    # scan to the text's end, a run of "{" quadratic. Before it, each opens one.
    end = text.rfind("}}}") + 3 if "}}}" in text else 0
    head, blocks = _protect(text[:end], _TRAC_CODE, _trac_code, "CODE")
    text = head + text[end:]
    # Monospace is verbatim in Trac: no emphasis, no links inside it.
    text, mono = _protect(text, _TRAC_MONO, lambda m: m.group(0), "MONO")
    text = _TRAC_HEADING.sub(lambda m: "#" * len(m.group(1)) + " " + m.group(2), text)
    text = _TRAC_BOLD_ITALIC.sub(r"***\1***", text)
    text = _TRAC_BOLD.sub(r"**\1**", text)
    text = _TRAC_ITALIC.sub(r"*\1*", text)
    text = _TRAC_LINK.sub(r"[\2](\1)", text)
    # "#N" is the reference the import links to the ticket (cite_source_issues).
    text = _TRAC_TICKET.sub(
        lambda m: f"{m.group(2)} (#{m.group(1)})" if m.group(2) else f"#{m.group(1)}", text
    )
    text = _trac_links(text, trac_url.rstrip("/"), wiki_pages, attachment_link)
    return _restore(_restore(text, mono, "MONO"), blocks, "CODE")


#: Trac links to what is not a ticket: realm -> the path of its page under the base URL.
_TRAC_REALMS = {
    "changeset": "changeset",
    "wiki": "wiki",
    "report": "report",
    "milestone": "milestone",
    "source": "browser",
    "browser": "browser",
    "log": "log",
}
#: Attachment realms: Trac's page of the file, and the file itself.
_ATTACHMENT = ("raw-attachment", "attachment")
#: The realms an attachment's ``file:realm:id`` names its parent by.
_ATTACHMENT_PARENTS = frozenset({"ticket", "wiki", "milestone"})
#: A link's target: quoted, or up to a space, bracket, quote or the placeholder
#: character (``\x00``) that marks kept links and code (``_FENCE``): a target
#: running into one took the placeholder into the URL (``wiki:Page[a](u)``).
_TRAC_TARGET = r'(?P<{}>"[^"\n\x00]+"|[^\s\[\]"\'<>(){{}}|`\x00]*[^\s\[\]"\'<>(){{}}|`.,;:!?\x00])'
#: Trac's WikiPageNames (trac.wiki.api): two or more capitalised words run
#: together, in any script, as ``/``-separated parts of a page's path.
_UPPER = "".join(c for c in map(chr, range(0x10000)) if c.isupper())
_LOWER = "".join(c for c in map(chr, range(0x10000)) if c.islower())
_WIKI_PAGE = (
    rf"(?:[{_UPPER}][{_LOWER}]+/?){{2,}}(?<!/)(?:\#[A-Za-z][\w:.-]*)?"
    rf"(?=:(?:\Z|\s)|[^:\w{_UPPER}{_LOWER}]|\Z)"
)
#: Realms whose links lead nowhere an import can point at: Trac renders a
#: diff on the fly, and InterTrac's ``trac:`` is another Trac's.
_TRAC_UNLINKED = ("diff", "trac")
_REALM = "(?:" + "|".join([*_TRAC_REALMS, "ticket", *_TRAC_UNLINKED, *_ATTACHMENT]) + ")"
#: Every Trac link shorthand (trac.wiki.parser, .api and the changeset, log
#: and report modules' syntax), each optionally escaped by a ``!`` before it.
#: One pattern, so that what one form became is not read again as another
#: (``changeset:abc`` in the code that ``[changeset:abc x]`` became).
_TRAC_SHORTHAND = re.compile(
    r"(?P<bang>!)?(?:"
    # ["free link"]: MoinMoin's page link, which Trac keeps for old pages
    r'\["(?P<free>[^"\n]+)"\]|'
    # [changeset:abc], [wiki:"Page name" the label]
    rf"\[(?P<brealm>{_REALM}):{_TRAC_TARGET.format('btarget')}(?:\s+(?P<blabel>[^\[\]\n]+))?\]"
    # [123], [1234abcd/trunk] (changesets), [1:3], [1-3/trunk] (revision logs); not
    # list[5], which Trac would link too, but which reads as code someone wrote
    r"|(?<![\w\]])\[(?P<crev>[0-9]+|[a-fA-F0-9]{8,})(?P<cpath>/[^\[\]\s]*)?\]"
    r"|(?<![\w\]])\[(?P<lfrom>[0-9]+)[:-](?P<lto>[0-9]+)(?P<lpath>/[^\[\]\s]*)?\]"
    # [WikiPage the label]
    rf"|\[(?P<bpage>{_WIKI_PAGE})\s+(?P<plabel>[^\[\]\n]+)\]"
    r"|\{(?P<report>[0-9]+)\}"
    # changeset:abc, wiki:"Page name", source:trunk/a.py@12#L3, log:trunk@1:3; not
    # foo.wiki:Bar or x-ticket:1: Trac reads a scheme ("[a-zA-Z][-a-zA-Z0-9+._]*")
    # from its first letter, so foo.wiki is one, an InterWiki name it lacks: text
    rf"|(?<![\w/:\[\x00.+-])(?P<realm>{_REALM}):{_TRAC_TARGET.format('target')}"
    # r123, r1:3 (a revision log)
    r"|(?<![\w/:\[#&\x00])r(?P<rev>[0-9]+)(?:[:-](?P<revto>[0-9]+))?\b"
    # !#12: an escaped ticket (an unescaped one is the import's to link)
    r"|(?(bang)(?P<ticket>\#[0-9]+\b)|(?!))"
    rf"|(?<![\w/:\x00])(?P<page>{_WIKI_PAGE})"
    r")"
)
#: A macro call: ``[[Image(f.png, 50%)]]``, ``[[TOC]]``, ``[[BR]]``. Its
#: arguments stop at the next ``[[`` (each call's scan would reach the line's
#: end on a run of ``[[A(``).
_TRAC_MACRO = re.compile(
    r"(?P<bang>!)?\[\[(?P<macro>[A-Za-z][\w/+-]*)"
    r"(?:\((?P<margs>(?:[^\n\[]|\[(?!\[))*?)\))?\]\]"
)
#: What those are not looked for in: links (as converted), URLs, place holders.
#: A URL's scheme is at most 32 characters (RFC 3986 sets no limit, IANA's
#: longest is 28): unbounded, each word of ``a-a-a-...`` scanned to its end.
_TRAC_LINK_KEPT = re.compile(_MD_LINK + r"|<[a-z]+:[^<>\s]+>|\b[a-z][a-z0-9+.-]{0,31}://[^\s)\]]+")


def _trac_url(base: str, realm: str, target: str) -> str:
    """The old Trac's page for ``realm:target`` (``source:trunk/a.py@12#L3``)."""
    target, _, anchor = target.partition("#")
    query = ""
    if realm in ("source", "browser", "log", "wiki") and "@" in target:
        target, _, revision = target.rpartition("@")
        if realm == "wiki":
            query = "?version=" + quote(revision, safe="")
        elif realm == "log" and re.fullmatch(r"[0-9a-fA-F]+[:-][0-9a-fA-F]+", revision):
            query = "?revs=" + quote(re.sub("[:]", "-", revision), safe="-")
        else:
            query = "?rev=" + quote(revision, safe="")
    if realm in ("source", "browser", "log"):
        target = target.lstrip("/")
    safe = "/" if realm in ("wiki", "changeset", "source", "browser", "log") else ""
    url = f"{base}/{_TRAC_REALMS[realm]}/{quote(target, safe=safe)}{query}"
    return url + "#" + quote(anchor, safe="") if anchor else url


def _attachment(target: str) -> tuple[str, str, str]:
    """``file``, ``file:ticket:12`` or ``ticket:12:file`` as (realm, id, file).

    As Trac's attachment module reads it: a three-part target names its
    parent first or last; anything else is a file of the text's own ticket.
    """
    target = target.partition("#")[0].partition("?")[0]
    parts = target.split(":", 2)
    if len(parts) == 3:
        if parts[1] in _ATTACHMENT_PARENTS:
            return parts[1], parts[2], parts[0]
        if parts[0] in _ATTACHMENT_PARENTS:
            return parts[0], parts[1], parts[2]
    return "", "", target


def _image(arguments: str, attachment_link: AttachmentLink) -> str:
    """``[[Image(spec, options...)]]``: the image, if ``spec`` is a file it can show."""
    spec = arguments.split(",", maxsplit=1)[0].strip().strip("'\"")
    if re.fullmatch(r"https?://[^\s()<>]+", spec):
        return f"![{spec.rsplit('/', 1)[-1]}]({spec})"
    parts = spec.split(":")
    if len(parts) == 3 and parts[0] in _ATTACHMENT_PARENTS:
        realm, resource, name = parts
    elif len(parts) == 2 and re.fullmatch(r"#[0-9]+", parts[0]):  # #12:file.png
        realm, resource, name = "ticket", parts[0][1:], parts[1]
    elif len(parts) == 1 and spec and not spec.startswith("/"):
        realm, resource, name = "", "", spec
    else:  # source:, a wiki page's file by its name alone, /file: nothing copied
        return ""
    url = attachment_link(realm, resource, name, True)
    return f"![{name}]({url})" if url else ""


def _trac_shorthand(
    match: re.Match[str], base: str, wiki_pages: Container[str], attachment_link: AttachmentLink
) -> str:
    """One Trac link shorthand as a link to the old Trac (``base``), else as written."""
    found = match.groupdict()
    if found["bang"]:  # escaped: Trac shows it as it is written, without the "!"
        # ... but "#12" would be bugless's issue 12 in the web: code, not a link.
        return f"`{found['ticket']}`" if found["ticket"] else match.group(0)[1:]
    written, label = match.group(0), ""
    if found["free"]:
        return f"`{written}`"
    if found["brealm"]:
        realm, target, label = found["brealm"], found["btarget"], found["blabel"] or ""
        written = f"{realm}:{target}"
    elif found["realm"]:
        realm, target = found["realm"], found["target"]
    elif found["crev"]:
        realm, target = "changeset", found["crev"] + (found["cpath"] or "")
    elif found["lfrom"]:
        realm = "log"
        target = (found["lpath"] or "/") + f"@{found['lfrom']}-{found['lto']}"
    elif found["rev"]:
        realm = "log" if found["revto"] else "changeset"
        target = f"/@{found['rev']}-{found['revto']}" if found["revto"] else found["rev"]
    elif found["report"]:
        realm, target = "report", found["report"]
    else:
        realm, target, label = "wiki", found["page"] or found["bpage"], found["plabel"] or ""
    label = label.strip().strip("\"'")
    if realm in _TRAC_UNLINKED:
        return f"{label} (`{written}`)" if label else f"`{written}`"
    if realm in _ATTACHMENT:
        url = attachment_link(*_attachment(target.strip('"')), realm == "raw-attachment")
        if not url:
            return f"{label} (`{written}`)" if label else f"`{written}`"
        shown = (label or written).replace("[", "\\[").replace("]", "\\]")
        return f"[{shown}]({url})"
    if realm == "ticket":  # "#N" is the reference the import links (cite_source_issues)
        if not target.isdigit():
            return written
        return f"{label} (#{target})" if label else f"#{target}"
    target = target.strip('"')
    if found["page"] or found["bpage"]:
        if not base or target.partition("#")[0] not in wiki_pages:
            # A CamelCase word that is no page of the Trac is a word, not a
            # link that would lead nowhere.
            return f"{label} ({target})" if label else target
    elif not base:
        return f"{label} (`{written}`)" if label else f"`{written}`"
    shown = (label or written).replace("[", "\\[").replace("]", "\\]")
    return f"[{shown}]({_trac_url(base, realm, target)})"


def _trac_links(
    text: str, base: str, wiki_pages: Container[str], attachment_link: AttachmentLink
) -> str:
    """Trac's link shorthands as links to ``base``, else as code or text.

    Macros go first, whole: an image's URL is an argument, not a link to
    keep, and what they become (code) is not read again.
    """
    text, macros = _protect(text, _TRAC_MACRO, lambda m: _macro(m, attachment_link), "MACRO")
    text, kept = _protect(text, _TRAC_LINK_KEPT, lambda m: m.group(0), "LINK")
    text = _TRAC_SHORTHAND.sub(
        lambda m: _trac_shorthand(m, base, wiki_pages, attachment_link), text
    )
    return _restore(_restore(text, kept, "LINK"), macros, "MACRO")


def _macro(match: re.Match[str], attachment_link: AttachmentLink) -> str:
    """An image of a file as a Markdown image; any other macro (or image) as code.

    Escaped (``![[TOC]]``), Trac shows it as written, without the ``!``.
    """
    written = match.group(0)
    if match["bang"]:
        return written[1:]
    image = _image(match["margs"] or "", attachment_link) if match["macro"] == "Image" else ""
    return image or f"`{written}`"
