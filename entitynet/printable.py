"""Text from the outside world made safe to print: control characters shown, not obeyed.

Entity labels, alt texts, URLs, host names and file contents reach the terminal in summaries,
warnings and error lines. A label holding an ANSI escape sequence could recolour, move the cursor,
clear the screen, rewrite the window title or hide the rest of a line; a right-to-left override
could show a command or a path other than the one there. `printable` shows each such character as
its escape (`\\x1b`, `\\u202e`) instead, so the text stays readable and nothing is executed by the
terminal. The CLI passes everything it prints through it (`entitynet_cli.main`).
"""

from __future__ import annotations

# C0 controls and DEL, C1 controls; bidirectional embeddings, overrides and isolates
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_KEEP_LINES = {c: _escape(c) for c in _CONTROLS if c not in (0x0A, 0x09)}  # newline and tab stay
_ONE_LINE = {c: _escape(c) for c in _CONTROLS}


def printable(text: str, newlines: bool = True) -> str:
    """`text` with every control character written as its escape; with `newlines`, line breaks and
    tabs are kept (a summary's layout), else they are escaped too (a one-line message)."""
    return text.translate(_KEEP_LINES if newlines else _ONE_LINE)


class PrintableStream:
    """A text stream that writes through `printable` (line breaks kept); everything else is the
    wrapped stream's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._stream, name)
