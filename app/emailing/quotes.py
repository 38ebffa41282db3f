"""The new part of a reply: the text above the quoted previous message.

Mail clients quote in a handful of ways: an attribution line ("On <date>, <who> wrote:"
and its translations) followed by ">" lines, an "-----Original Message-----" separator
(Outlook), or a header block ("From: ... Sent: ... To: ... Subject: ...") under a rule.
The reply is what comes before the first of these. A reply written between quoted lines
(inline answers) keeps its quotes: cutting there would lose the customer's answers.
"""

from __future__ import annotations

import re

# Attribution lines, English and the common translations; they may wrap onto a second line.
_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"On\s.{1,300}\swrote\s?:"
    r"|Le\s.{1,300}\sa\s+écrit\s?:"
    r"|Am\s.{1,300}\sschrieb\s.{0,300}:"
    r"|El\s.{1,300}\sescribió\s?:"
    r"|Em\s.{1,300}\sescreveu\s?:"
    r"|Op\s.{1,300}\sschreef\s.{0,300}:"
    r"|Il\s.{1,300}\sha\s+scritto\s?:"
    r"|.{1,300}\s<[^<>\s]+@[^<>\s]+>\s+(?:wrote|schrieb|a\s+écrit|escribió)\s?:"
    r")\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(?:Original\s+Message|Ursprüngliche\s+Nachricht|Message\s+d'origine|"
    r"Mensaje\s+original|Oorspronkelijk\s+bericht|Messaggio\s+originale|"
    r"Forwarded\s+message)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*_{10,}\s*$")
_HEADER_LINE = re.compile(
    r"^\s*\*?(From|Von|De|Van|Da|Sent|Gesendet|Envoyé|Enviado|Date|Datum|To|An|À|Para|Aan|"
    r"Subject|Betreff|Objet|Asunto|Assunto|Onderwerp|Oggetto|Cc)\s*:\*?\s",
    re.IGNORECASE,
)
_FROM_LINE = re.compile(r"^\s*\*?(From|Von|De|Van|Da)\s*:\*?\s", re.IGNORECASE)
_MAX_LINES = 20_000  # past this, look no further (hostile input)


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _is_header_block(lines: list[str], i: int) -> bool:
    """A "From:" line followed by at least two more of the usual header lines."""
    if not _FROM_LINE.match(lines[i]):
        return False
    following = [ln for ln in lines[i + 1 : i + 6] if ln.strip()]
    return sum(1 for ln in following if _HEADER_LINE.match(ln)) >= 2


def _interleaved(lines: list[str]) -> bool:
    """New text after quoted lines: inline answers."""
    seen_quote = False
    for line in lines[:_MAX_LINES]:
        if _quoted(line):
            seen_quote = True
        elif seen_quote and line.strip():
            return True
    return False


def _attribution_at(lines: list[str], i: int) -> bool:
    line = lines[i]
    if len(line) > 400 or not line.strip():
        return False
    if _ATTRIBUTION.match(line):
        return True
    if i + 1 < len(lines) and len(lines[i + 1]) <= 400 and not _ATTRIBUTION.match(lines[i + 1]):
        return bool(_ATTRIBUTION.match(f"{line.rstrip()} {lines[i + 1].strip()}"))
    return False


def _cut_at(lines: list[str]) -> int | None:
    for i, line in enumerate(lines[:_MAX_LINES]):
        if _SEPARATOR.match(line) or _is_header_block(lines, i):
            return i
        if _RULE.match(line) and i + 1 < len(lines) and _is_header_block(lines, i + 1):
            return i
        if _attribution_at(lines, i):
            return None if _interleaved(lines[i + 1 :]) else i
        if _quoted(line):
            # A quoted block that runs to the end (blank lines aside) is the old message;
            # quotes with new text after them are inline answers and stay.
            return None if _interleaved(lines[i:]) else i
    return None


def reply_part(text: str) -> str:
    """The new text of a message (the whole text when nothing is quoted)."""
    lines = text.split("\n")
    cut = _cut_at(lines)
    if cut is None:
        return text.strip()
    return "\n".join(lines[:cut]).strip()
