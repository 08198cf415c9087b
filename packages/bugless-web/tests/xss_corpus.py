"""Payloads that must stay inert wherever people can type text (titles, comments, names)."""

from __future__ import annotations

import re

from bugless_web.assets import STATIC_DIR


def own_script(src: str) -> bool:
    """Whether ``src`` is one of the web tier's own scripts (``/static/NAME.HASH.js``)."""
    match = re.fullmatch(r"/static/([\w-]+)\.[0-9a-f]{12}\.js", src)
    return match is not None and (STATIC_DIR / f"{match[1]}.js").is_file()


PAYLOADS = [
    "<script>window.__xss = 1; alert('xss')</script>",
    '<img src=x onerror="window.__xss=1;alert(1)">',
    "<svg/onload=alert(1)>",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "[click me](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "![img](javascript:alert(1))",
    '<a href="javascript:alert(1)">link</a>',
    "<iframe src=javascript:alert(1)></iframe>",
    "<details open ontoggle=alert(1)>",
    "<body onload=alert(1)>",
    "<style>body{display:none}</style>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    "[a](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "`<script>alert(1)</script>` and ```\n<script>alert(1)</script>\n```",
    "<<script>script>alert(1)<</script>/script>",
    "<a href='https://ok.example' onclick='alert(1)'>ok</a>",
    "{{ 7*7 }} {% raw %} ${7*7}",
]


def dangerous_markup(html: str) -> list[str]:
    """What in a page could run script, as a real HTML parser sees the tags.

    Text that merely *looks* like a payload inside an escaped attribute value or
    text node is harmless and is not reported.
    """
    from html.parser import HTMLParser

    found: list[str] = []

    class Checker(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if (
                tag in {"iframe", "object", "embed", "svg", "math", "style", "base", "form"}
                and tag != "form"
            ):
                found.append(f"<{tag}>")
            if tag == "script":
                src = dict(attrs).get("src") or ""
                if not own_script(src):
                    found.append("<script> not from /static")
            for name, value in attrs:
                if name.startswith("on"):
                    found.append(f"{tag} {name}=")
                if name in {"href", "src", "action", "formaction", "xlink:href"}:
                    scheme = (value or "").strip().lower().replace("\t", "").replace("\n", "")
                    if scheme.startswith(("javascript:", "data:", "vbscript:")):
                        found.append(f"{tag} {name}={value}")

    Checker().feed(html)
    return found
