"""Small valid files of every image format Pillow registers, the seeds of the image fuzzer
(tests/test_hostile_images.py): written by Pillow where it can write the format, built by hand from
the format's header layout where Pillow only reads it. Each seed decodes (or, for formats Pillow can
identify but never decode, at least opens), so a mutation of it reaches deep into its decoder."""

from __future__ import annotations

import functools
import io
import struct

import numpy as np
from PIL import Image

W, H = 20, 16  # small, and different, so a swapped width and height shows
MODES = ("RGB", "RGBA", "L", "P", "1", "I;16", "I", "F")


def _picture(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).convert(mode)


def written() -> dict[str, bytes]:
    """format-mode -> bytes, for each format and mode Pillow's own encoder writes (but ICNS, whose
    encoder always writes every size up to 1024x1024: a megabyte, and a second, a seed)."""
    Image.init()
    out: dict[str, bytes] = {}
    for fmt in sorted(set(Image.SAVE) - {"ICNS"}):
        for mode in MODES:
            buf = io.BytesIO()
            try:
                _picture(mode).save(buf, format=fmt)
            except Exception:  # noqa: BLE001 - a mode the format cannot hold, or no encoder here
                continue
            out[f"{fmt}-{mode}"] = buf.getvalue()
    return out


def _ramp(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def _be(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def _fits() -> bytes:
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    2",
        f"NAXIS1  = {W:20d}",
        f"NAXIS2  = {H:20d}",
        "END",
    ]
    header = b"".join(c.ljust(80).encode() for c in cards).ljust(2880, b" ")
    return header + _ramp(W * H).ljust(2880, b"\0")


def _fli() -> bytes:
    head = bytearray(128)
    struct.pack_into("<IHHHHHH", head, 0, 0, 0xAF12, 1, W, H, 8, 3)
    pixels = bytes((x * 7 + y * 3) % 256 for y in range(H) for x in range(W))
    sub = struct.pack("<IH", 6 + len(pixels), 16) + pixels  # FLI_COPY: raw pixels
    frame = struct.pack("<IHH8x", 16 + len(sub), 0xF1FA, 1) + sub
    struct.pack_into("<I", head, 0, 128 + len(frame))
    return bytes(head) + frame


def _ftex() -> bytes:
    pixels = _ramp(W * H * 3)
    return b"FTEX" + struct.pack("<iiiiiii", 1, W, H, 1, 1, 1, 32) + struct.pack("<i", len(pixels)) + pixels


def _gbr() -> bytes:
    comment = b"seed\0"
    head = _be(28 + len(comment), 2, W, H, 1) + b"GIMP" + _be(10) + comment
    return head + _ramp(W * H)


def _imt() -> bytes:
    return b"width %d\nheight %d\npixel n8\n\x0c" % (W, H) + _ramp(W * H)


def _iptc() -> bytes:
    def field(record: int, dataset: int, data: bytes) -> bytes:
        return bytes((0x1C, record, dataset)) + struct.pack(">H", len(data)) + data

    return (
        field(3, 60, bytes((1, 0)))  # one layer, no component: greyscale
        + field(3, 20, struct.pack(">H", W))
        + field(3, 30, struct.pack(">H", H))
        + field(3, 120, bytes((1,)))  # raw
        + field(8, 10, _ramp(W * H))
        + field(9, 0, b"")
    )


def _mcidas() -> bytes:
    w = [0] * 64
    w[1], w[8], w[9], w[10], w[13], w[14], w[33] = 4, H, W, 1, 1, 0, 256  # 1-based words 2, 9 ...
    return struct.pack(">64i", *w) + _ramp(W * H)


def _mpeg() -> bytes:
    return b"\x00\x00\x01\xb3" + bytes(((W >> 4) & 0xFF, ((W & 15) << 4) | (H >> 8), H & 0xFF)) + bytes(64)


def _pcd() -> bytes:
    return bytes(2048) + b"PCD_IPI".ljust(1539, b"\0") + bytes(512)


def _pixar() -> bytes:
    head = bytearray(1024)
    head[:4] = b"\x80\xe8\x00\x00"
    struct.pack_into("<HHHHHH", head, 416, H, W, 0, 0, 14, 2)
    return bytes(head) + _ramp(W * H * 3)


def _psd() -> bytes:
    head = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, H, W, 8, 3)
    sections = _be(0) + _be(0) + _be(0)  # colour mode data, image resources, layers: empty
    planes = bytes((x + y) % 256 for _ in range(3) for y in range(H) for x in range(W))
    return head + sections + struct.pack(">H", 0) + planes


def _sun() -> bytes:
    return _be(0x59A66A95, W, H, 8, W * H, 1, 0, 0) + _ramp(W * H)


def _xpm() -> bytes:
    rows = ",\n".join('"' + "".join("ab"[(x + y) % 2] for x in range(W)) + '"' for y in range(H))
    return (
        b"/* XPM */\nstatic char *seed[] = {\n"
        + f'"{W} {H} 2 1",\n"a c #FF0000",\n"b c None",\n{rows}\n}};\n'.encode()
    )


def _xvthumb() -> bytes:
    return b"P7 332\n#XVVERSION\n#END_OF_COMMENTS\n%d %d 255\n" % (W, H) + _ramp(W * H)


def _dcx() -> bytes:
    pcx = io.BytesIO()
    _picture("P").save(pcx, format="PCX")
    return struct.pack("<III", 0x3ADE68B1, 12, 0) + pcx.getvalue()


def _cur() -> bytes:
    ico = io.BytesIO()
    _picture("RGB").resize((16, 16)).save(ico, format="ICO", sizes=[(16, 16)], bitmap_format="bmp")
    data = bytearray(ico.getvalue())
    data[2] = 2  # type 2: a cursor
    return bytes(data)


def _icns() -> bytes:
    png = io.BytesIO()
    _picture("RGBA").resize((16, 16)).save(png, format="PNG")
    icon = b"icp4" + _be(8 + len(png.getvalue())) + png.getvalue()  # 16x16, PNG inside
    return b"icns" + _be(8 + len(icon)) + icon


def _wmf() -> bytes:
    placeable = struct.pack("<IHhhhhHI", 0x9AC6CDD7, 0, 0, 0, W * 20, H * 20, 1440, 0)
    checksum = 0
    for (word,) in struct.iter_unpack("<H", placeable[:20]):
        checksum ^= word
    return placeable + struct.pack("<H", checksum) + struct.pack("<HHHIHIH", 1, 9, 0x300, 64, 0, 0, 0)


HAND_MADE = {
    "BUFR": lambda: b"BUFR" + bytes(124),
    "CUR": _cur,
    "DCX": _dcx,
    "FITS": _fits,
    "FLI": _fli,
    "FTEX": _ftex,
    "GBR": _gbr,
    "GRIB": lambda: b"GRIB\0\0\0\x01" + bytes(120),
    "HDF5": lambda: b"\x89HDF\r\n\x1a\n" + bytes(120),
    "ICNS": _icns,
    "IMT": _imt,
    "IPTC": _iptc,
    "MCIDAS": _mcidas,
    "MPEG": _mpeg,
    "PCD": _pcd,
    "PIXAR": _pixar,
    "PSD": _psd,
    "SUN": _sun,
    "WMF": _wmf,
    "XPM": _xpm,
    "XVTHUMB": _xvthumb,
}


def hand_made() -> dict[str, bytes]:
    return {name: build() for name, build in HAND_MADE.items()}


@functools.cache
def _all() -> tuple[tuple[str, bytes], ...]:
    return tuple(sorted({**written(), **hand_made()}.items()))


def seeds() -> dict[str, bytes]:
    """Every seed, by name ("PNG-RGBA", "PSD", ...); made once per process."""
    return dict(_all())
