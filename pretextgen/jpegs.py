"""Damaged or only odd? The evidence behind the scan's verdict on a JPEG that libjpeg warned about.

libjpeg decodes damaged entropy-coded data without failing. It warns and fills what it lost with
flat grey, or, when the damage desynchronises its Huffman decoding, it decodes garbage, finishes
the image early and reports the scan's unread remainder as "N extraneous bytes before marker".
Two harmless quirks of real files raise the same warning with every pixel intact: junk between
header segments, and zero padding after a scan. ``verdict`` tells them apart by where the skipped
bytes lie in the file's marker structure and what they are, never by the warning's text alone:

- before a header marker (before the first scan): junk libjpeg skipped while reading tables and
  metadata; no pixel depends on it;
- after a scan: harmless only if every skipped byte is zero fill that the decoder never needed.
  A desynchronised decoder leaves the scan's real remainder there, which is entropy-coded data
  (never a run of zeros: measured on damaged copies, BENCHMARKS.md "Damaged JPEGs");
- before a restart marker, or any other warning: damaged.

Damage that libjpeg absorbs without any warning (a resync that happens to land on the scan's
end) leaves no evidence in the file's structure and is not caught here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# libjpeg-turbo reads entropy-coded data ahead into a 64-bit buffer and leaves the whole bytes it
# did not use out of its count of extraneous bytes: up to 7 measured, 8 allowed.
READ_AHEAD = 8

_EXTRANEOUS = re.compile(r"Corrupt JPEG data: (\d+) extraneous bytes before marker 0x([0-9a-f]{2})")
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field (TEM, RST0-7)


@dataclass(frozen=True)
class Marker:
    code: int
    pos: int  # where the marker's 0xFF (or its run of 0xFF fill bytes) starts
    gap: tuple[int, int]  # the bytes between the previous segment's end and the marker
    after_scan: bool  # the gap is entropy-coded data (a scan's), not space between header segments


def markers(buf: bytes) -> list[Marker]:
    """The file's markers after SOI up to and including the first EOI after a scan, found the way
    libjpeg finds them: fill bytes skipped, stuffed 0xFF00 and (inside a scan) restart markers are
    data. Stops early, without error, where the file ends or a length runs past it."""
    out: list[Marker] = []
    if buf[:2] != b"\xff\xd8":
        return out
    pos, after_scan, n = 2, False, len(buf)
    while pos < n:
        start, i = pos, pos
        while True:
            j = buf.find(b"\xff", i)
            if j < 0:
                return out
            k = j + 1
            while k < n and buf[k] == 0xFF:
                k += 1
            if k >= n:
                return out
            code = buf[k]
            if code == 0 or (after_scan and code in _STANDALONE):
                i = k + 1
                continue
            break
        out.append(Marker(code, j, (start, j), after_scan))
        if code == 0xD9:
            return out
        if code in _STANDALONE:
            pos = k + 1
            continue
        if k + 3 > n:
            return out
        pos = k + 1 + int.from_bytes(buf[k + 1 : k + 3], "big")
        after_scan = code == 0xDA
    return out


def _discarded(gap: bytes) -> int:
    """libjpeg's count of the bytes it skips before a marker: 1 per byte, 2 per stuffed 0xFF00."""
    count, i = 0, 0
    while i < len(gap):
        if gap[i] != 0xFF:
            count, i = count + 1, i + 1
            continue
        while i < len(gap) and gap[i] == 0xFF:
            i += 1
        count, i = count + 2, i + 1
    return count


def _zero_run_before(buf: bytes, pos: int) -> int:
    i = pos
    while i > 0 and buf[i - 1] == 0:
        i -= 1
    return pos - i


def verdict(buf: bytes, said: list[str]) -> tuple[str | None, str | None]:
    """(why the JPEG is damaged, None) or (None, its harmless quirk, or None when libjpeg said
    nothing), from the file's bytes and libjpeg's warnings on decoding it."""
    if not said:
        return None, None
    found = markers(bytes(buf))
    quirks = []
    cursor = 0
    for line in said:
        m = _EXTRANEOUS.fullmatch(line)
        if not m:
            return "corrupt JPEG data: " + line.removeprefix("Corrupt JPEG data: "), None
        count, code = int(m.group(1)), int(m.group(2), 16)
        where = next((i for i in range(cursor, len(found)) if found[i].code == code
                      and (found[i].after_scan or _discarded(buf[slice(*found[i].gap)]) == count)), None)
        if where is None:  # before a restart marker, or bytes where the structure has none
            return f"corrupt JPEG data: the decoder lost sync ({count} bytes unread before marker 0x{code:02x})", None
        mk, cursor = found[where], where + 1
        if not mk.after_scan:
            quirks.append(f"{count} junk bytes before header marker 0x{code:02x}")
            continue
        zeros = _zero_run_before(buf, mk.pos)
        if zeros < count:
            return (f"corrupt JPEG data: the decoder lost sync (it finished the image with {count} bytes of the "
                    f"scan unread, and they are data, not zero padding)"), None
        if zeros > count + READ_AHEAD:
            return (f"corrupt JPEG data: zeros over the end of a scan ({zeros} zero bytes, of which the decoder "
                    f"decoded {zeros - count} as data)"), None
        quirks.append(f"{zeros} zero bytes of padding after a scan")
    return None, "; ".join(quirks)
