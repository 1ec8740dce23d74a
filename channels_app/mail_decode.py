"""Reading mail text as a person would: charsets as mailers really use them, RFC 2047
encoded-words with wrong or missing charsets, and addresses RFC 5322 allows.

- A label mailers use for a subset is read as the superset (gb2312 → gb18030, shift_jis →
  cp932, euc-kr → cp949, iso-2022-jp → its extensions), and Latin-1/ASCII labels on bytes
  that are really UTF-8 or windows-1252 are read as those.
- An unknown or missing label is decided by detection (charset-normalizer); replacement
  characters only when no decoding exists at all.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re

from charset_normalizer import from_bytes

# Mailers label text with a charset whose superset they really wrote.
SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "cp936": ("gb18030",),
    "euc-cn": ("gb18030",),
    "iso-gb2312": ("gb18030",),
    "chinese": ("gb18030",),
    "shift_jis": ("cp932",),
    "shift-jis": ("cp932",),
    "sjis": ("cp932",),
    "x-sjis": ("cp932",),
    "ms_kanji": ("cp932",),
    "windows-31j": ("cp932",),
    "euc-kr": ("cp949",),
    "ks_c_5601-1987": ("cp949",),
    "ks_c_5601": ("cp949",),
    "ksc5601": ("cp949",),
    "korean": ("cp949",),
    "iso-2022-jp": ("iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_3"),
    "csiso2022jp": ("iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_3"),
    "big5": ("big5hkscs", "cp950"),
    "tis-620": ("cp874",),
    "iso-8859-11": ("cp874",),
}
# Labels that promise 7-bit or Latin-1 but routinely carry UTF-8 or windows-1252 bytes.
_LATIN_LABELS = {"", "us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ansi_x3.4-1968"}
_C1 = re.compile(rb"[\x80-\x9f]")
_C1_TEXT = re.compile("[\x80-\x9f]")
# ISO 8859 part → the Windows code page that is its superset in practice.
_WINDOWS_OF = {
    "iso8859-1": "cp1252",
    "iso8859-2": "cp1250",
    "iso8859-5": "cp1251",
    "iso8859-7": "cp1253",
    "iso8859-8": "cp1255",
    "iso8859-9": "cp1254",
    "iso8859-13": "cp1257",
    "iso8859-15": "cp1252",
    "latin-1": "cp1252",
}


def _codec(label: str) -> str | None:
    try:
        return codecs.lookup(label).name
    except (LookupError, TypeError, ValueError):
        return None


def decode_bytes(payload: bytes, label: str | None) -> str:
    """`payload` as text, given the charset `label` the mail declared (may be wrong or empty)."""
    if not payload:
        return ""
    label = (label or "").strip().strip('"').lower()
    if payload.isascii() and (label in _LATIN_LABELS or "2022" not in label):
        return payload.decode("ascii")
    candidates: list[str] = []
    if label in _LATIN_LABELS:
        # Real UTF-8 decodes strictly; C1 bytes in "Latin-1" are windows-1252 quotes and dashes.
        candidates = ["utf-8", "cp1252" if _C1.search(payload) else "latin-1"]
    else:
        # An unknown label: strict UTF-8 first (it rarely decodes by accident), then detection.
        candidates = [*SUPERSETS.get(label, ()), *([label] if _codec(label) else [])] or ["utf-8"]
        if _codec(label) == "utf-8":
            candidates.append("cp1252")  # "utf-8" written by a Windows mailer
    for name in candidates:
        try:
            text = payload.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        windows = _WINDOWS_OF.get(_codec(name) or "")
        if windows and _C1_TEXT.search(text):
            # C1 controls are never meant in mail: ISO-labelled text written by a Windows code page.
            try:
                return payload.decode(windows)
            except UnicodeDecodeError:
                pass
        return text
    detected = detect(payload)
    if detected is not None:
        return detected
    for name in ("utf-8", "cp1252"):
        try:
            return payload.decode(name)
        except UnicodeDecodeError:
            continue
    return payload.decode(candidates[0] if candidates else "utf-8", errors="replace")


def detect(payload: bytes) -> str | None:
    """Decode by detection: for unknown labels (x-unknown) and bytes that fail their label."""
    try:
        best = from_bytes(payload[:65536]).best()
    except Exception:  # noqa: BLE001 - detection is a best effort
        return None
    if best is None or best.encoding is None:
        return None
    try:
        return payload.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None


# --- RFC 2047 -----------------------------------------------------------------

_EW = re.compile(r"=\?([^?\s]*)\?([bBqQ])\?([^?\s]*)\?=")
_EW_GAP = re.compile(r"(\?=)[ \t\r\n]+(=\?)")


def _word_bytes(encoding: str, text: str) -> bytes:
    if encoding.lower() == "b":
        padded = text + "=" * (-len(text) % 4)
        try:
            return base64.b64decode(padded)
        except (binascii.Error, ValueError):
            return text.encode("ascii", "replace")
    return quopri.decodestring(text.replace("_", " ").encode("ascii", "replace"), header=False)


def decode_header(value: str) -> str:
    """A raw header value as text: unfolded, encoded-words decoded (adjacent words of one
    charset joined as bytes first, so a character split between words survives), 8-bit
    bytes (surrogate-escaped by the parser) decoded as UTF-8 or by detection."""
    if not value:
        return ""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        raw = value.encode("utf-8", "surrogateescape")
        value = decode_bytes(raw, "")
    value = re.sub(r"\r?\n[ \t]*", " ", value)
    if "=?" not in value:
        return value.strip()
    value = _EW_GAP.sub(r"\1\2", value)  # whitespace between adjacent words is not text
    out: list[str] = []
    pos = 0
    pending: list[tuple[str, bytes]] = []

    def flush() -> None:
        if pending:
            label = pending[0][0]
            out.append(decode_bytes(b"".join(b for _, b in pending), label))
            pending.clear()

    for match in _EW.finditer(value):
        if match.start() > pos:
            flush()
            out.append(value[pos : match.start()])
        label = match.group(1).split("*", 1)[0].lower()  # RFC 2231 language suffix
        data = _word_bytes(match.group(2), match.group(3))
        if pending and pending[0][0] != label:
            flush()
        pending.append((label, data))
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out).strip()


# --- addresses ----------------------------------------------------------------

_ANGLE = re.compile(r"<([^<>]*)>")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def parse_mailbox(raw: str) -> tuple[str, str]:
    """(display name, address) of the first mailbox in a raw address header.

    The address is the angle-addr when there is one, never something in the display
    name (`alice@customer.example <attacker@evil.example>` is attacker@evil.example).
    Encoded-words in the name are decoded after the address is taken."""
    raw = (raw or "").strip()
    if not raw:
        return "", ""
    # Only the first mailbox: the text up to the first comma (outside quotes and angle
    # brackets) that closes something holding an address (`Doe, John <j@x>` stays whole).
    first, upto = raw, ""
    for part in _split_outside(raw, separators=","):
        upto = f"{upto},{part}" if upto else part
        if "@" in upto or "<" in upto:
            first = upto
            break
    unquoted = _QUOTED.sub(lambda m: '"' + "x" * (len(m.group(0)) - 2) + '"', first)
    angles = list(_ANGLE.finditer(unquoted))
    if angles:
        last = angles[-1]
        address = first[last.start() + 1 : last.end() - 1].strip()
        name = first[: last.start()].strip()
    else:
        name, address = "", re.sub(r"\s*\([^()]*\)\s*", " ", first).strip()  # drop (comments)
        if "@" not in address:
            name, address = address, ""
    if address.lower().startswith("mailto:"):
        address = address[7:]
    if address.startswith("@") and ":" in address:  # obsolete source route <@a,@b:user@host>
        address = address.split(":", 1)[1]
    name = name.strip().strip(",")
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    name = decode_header(name).strip()
    if name.lower() == address.lower():
        name = ""
    return name, address.strip()


def header_addresses(raw: str) -> list[str]:
    """Every address in a raw To/Cc header (angle-addr wins over text), lower-case."""
    found: list[str] = []
    rest = raw or ""
    for part in _split_outside(rest):
        _, address = parse_mailbox(part)
        if address and "@" in address:
            found.append(address.lower())
    return found


def _split_outside(raw: str, separators: str = ",;") -> list[str]:
    """Split at separators outside quotes and angle brackets."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(raw):
        if ch == '"' and (i == 0 or raw[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and ch in separators:
            parts.append(raw[start:i])
            start = i + 1
    parts.append(raw[start:])
    return [p for p in (p.strip() for p in parts) if p]
