"""Hostile images: whatever a served or collected file holds, every reader ends in a documented
outcome. A fuzzer mutates small files of every format Pillow registers (tests/image_seeds.py) and
feeds them to harvest, thumbnails, decontamination hashing, evaluation loading and the training
decode; a fake plugin raises every kind of exception a decoder might; a high-bit-depth image decodes
within the memory of an ordinary one; ImageFolder sets refuse hidden and duplicated classes."""

from __future__ import annotations

import io
import pickle
import random
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hostile import tried
from image_seeds import seeds
from PIL import Image, PngImagePlugin

from entitynet.curation import evalsets
from entitynet.errors import ConfigError, EntityNetError
from entitynet.harvest import to_result
from entitynet.images import prepare as prep
from entitynet.images.decode import REASONS, ImageRejected, decode
from entitynet.images.process import ImageOptions, ProcessedImage, process_image
from entitynet.images.thumbnail import thumbnail
from entitynet.records import Candidate, Outcome
from train import eval_data
from train.input_pipeline import centre_box, centre_crop, decode_crop, normalise

# Pillow warns about what it skips in a damaged file (corrupt EXIF, short tags): expected here
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
    pytest.mark.filterwarnings("ignore:IM image format is deprecated:DeprecationWarning"),
]
MUTATIONS_PER_SEED = 15
ROOT = Path(__file__).resolve().parent.parent


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One of the ways a file goes wrong on the way: truncated, a few bytes garbled, a header
    field set to an extreme, or cut to its first 128 bytes."""
    d = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:
        return bytes(d[: rng.randrange(1, len(d))])
    if kind == 1:
        for _ in range(rng.randrange(1, 8)):
            d[rng.randrange(len(d))] = rng.randrange(256)
    elif kind == 2:
        d[rng.randrange(min(len(d), 64))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF])
    elif kind == 3:
        at = rng.randrange(min(len(d), 64))
        d[at : at + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\0\0\0\0", b"\0\0\x01\0", b"\x7f\xff"])
    else:
        return bytes(d[:128])
    return bytes(d)


@pytest.fixture(scope="module")
def fuzz() -> list[tuple[str, bytes]]:
    """(name, bytes): every seed as it is, and MUTATIONS_PER_SEED mutations of each (fixed seed)."""
    rng = random.Random(27)
    out = []
    for name, data in sorted(seeds().items()):
        out.append((name, data))
        out += [(f"{name}~{k}", mutate(rng, data)) for k in range(MUTATIONS_PER_SEED)]
    return out


def test_the_seeds_cover_every_format_pillow_registers():
    Image.init()
    covered = {name.split("-")[0] for name in seeds()}
    assert set(Image.OPEN) <= covered, set(Image.OPEN) - covered
    assert covered >= {"PNG", "JPEG", "GIF", "WEBP", "TIFF", "AVIF", "DDS", "BLP", "PSD", "FITS", "SUN"}


def _harvest_opts() -> ImageOptions:
    return ImageOptions(min_side=4, max_aspect=10)


def test_fuzz_harvest_every_input_is_an_image_or_a_reason(fuzz):
    outcomes: dict[str, int] = {}
    for name, data in fuzz:
        try:
            got = process_image(data, _harvest_opts())
        except ImageRejected as e:
            assert e.reason in REASONS, (name, e)
            # the detail goes into the harvest's outcomes, which a re-run reproduces byte for byte
            assert "\n" not in str(e) and not re.search(r"\b0x[0-9a-f]{6,}", str(e)), (name, e)
            outcomes[e.reason] = outcomes.get(e.reason, 0) + 1
            continue
        assert isinstance(got, ProcessedImage)
        out = Image.open(io.BytesIO(got.jpeg))
        assert out.format == "JPEG" and out.size == (got.width, got.height), name
        outcomes["processed"] = outcomes.get("processed", 0) + 1
    tried("image-fuzz", len(fuzz))
    # the fuzzer reaches past the header: inputs decode, and inputs fail in several ways
    assert outcomes.get("processed", 0) > len(fuzz) // 10, outcomes
    assert {"not_an_image", "decode_error"} <= set(outcomes), outcomes


def test_fuzz_thumbnails_every_input_is_a_thumbnail_or_a_reason(fuzz):
    made = 0
    for name, data in fuzz:
        try:
            small = thumbnail(data, 32)
        except ImageRejected as e:
            assert e.reason in REASONS, (name, e)
            continue
        assert max(Image.open(io.BytesIO(small)).size) <= 32, name
        made += 1
    tried("image-fuzz", len(fuzz))
    assert 0 < made < len(fuzz)


def test_fuzz_decontamination_hashes_what_decodes_and_counts_the_rest(fuzz, tmp_path):
    by_ref = {}
    for n, (_, data) in enumerate(fuzz):
        ref = f"{n % 7}/{n}.png"  # Pillow goes by the content, whatever the suffix says
        (tmp_path / ref).parent.mkdir(exist_ok=True)
        (tmp_path / ref).write_bytes(data)
        by_ref[ref] = data
    ev = evalsets.load(str(tmp_path))
    tried("image-fuzz", len(fuzz))
    assert len(ev.hashes) + ev.unreadable == len(fuzz)
    assert 0 < ev.unreadable < len(fuzz)
    for ref, h in zip(ev.refs, ev.hashes.tolist(), strict=True):  # the file path hashes as the bytes do
        assert h == evalsets.hash_image(by_ref[ref], ImageOptions())


def test_fuzz_evaluation_skips_and_counts_what_does_not_decode(fuzz, tmp_path, capsys):
    for n, (_, data) in enumerate(fuzz):
        folder = tmp_path / ("cat" if n % 2 else "dog")
        folder.mkdir(exist_ok=True)
        (folder / f"{n:05d}.jpg").write_bytes(data)
    data = eval_data.image_folder(str(tmp_path), {})
    total = data.size
    refs_before = [data.ref(i) for i in range(total)]
    labels_before = dict(zip(refs_before, data.labels.tolist(), strict=True))
    emb = eval_data.image_embeddings(data, lambda x: x.mean(axis=(1, 2)), 16, batch=256)
    tried("image-fuzz", len(fuzz))
    assert total == len(fuzz)
    assert emb.shape == (data.size, 3) and 0 < data.size < total
    assert data.size + len(data.unreadable) == total
    kept = [data.ref(i) for i in range(data.size)]
    assert [labels_before[r] for r in kept] == data.labels.tolist()  # labels follow their images
    skipped = {u.split(" (")[0] for u in data.unreadable}
    assert skipped.isdisjoint(kept) and skipped | set(kept) == set(refs_before)
    assert all(u.split(" (")[1].rstrip(")") in REASONS for u in data.unreadable)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{len(data.unreadable)} image(s) cannot be decoded" in err[0]
    assert f"{data.size} scored" in err[0] and "re-encode or remove them" in err[0]
    # the loader of the kept images reads exactly the images that were scored
    again = np.stack([normalise(centre_crop(data.load(i), 16)).mean(axis=(0, 1)) for i in (0, 1)])
    assert np.allclose(again, emb[:2], atol=1e-5)


def test_fuzz_training_decode_is_pixels_or_one_line(fuzz):
    decoded = 0
    for name, data in fuzz:
        try:
            x = decode_crop(data, centre_box, 24)
        except EntityNetError as e:
            assert "\n" not in str(e) and "re-run `entitynet harvest`" in str(e), name
            continue
        assert x.shape == (24, 24, 3) and x.dtype == np.uint8, name
        decoded += 1
    tried("image-fuzz", len(fuzz))
    assert 0 < decoded < len(fuzz)


# ---------------------------------------------------------------- the file, and every exception


def dds_128() -> bytes:
    """A 128-byte DDS file (a header alone) whose pixel format is unknown: Pillow recognises it and
    raises NotImplementedError, outside the (OSError, SyntaxError, ValueError) readers used to catch."""
    data = bytearray(seeds()["DDS-RGB"][:128])
    data[80:84] = bytes(4)  # the pixel format's flags
    return bytes(data)


def test_a_128_byte_file_pillow_cannot_decode_is_a_reason_for_every_reader(tmp_path, capsys):
    data = dds_128()
    assert len(data) == 128
    with pytest.raises(Exception) as raw:
        Image.open(io.BytesIO(data)).load()
    assert not isinstance(raw.value, OSError | SyntaxError | ValueError)  # what used to escape
    tried("image-decoder", 6)

    with pytest.raises(ImageRejected) as e:
        process_image(data)
    assert e.value.reason == "decode_error" and "NotImplementedError" in str(e.value)
    candidate = Candidate(url="http://example.com/a.dds", query_ids=("q",), entity_ids=("Q1",))

    class Fetched:  # a fetch that brought the file back
        ok, data, reason, detail = True, dds_128(), "", ""

    outcome = to_result(candidate, Fetched(), ImageOptions())
    assert isinstance(outcome, Outcome) and outcome.outcome == "decode_error"
    with pytest.raises(ImageRejected):
        thumbnail(data)
    assert evalsets.hash_image(data, ImageOptions()) is None
    good = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(good, "PNG")
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "good.png").write_bytes(good.getvalue())
    (tmp_path / "a" / "bad.png").write_bytes(data)
    ev = evalsets.load(str(tmp_path))
    assert (len(ev.hashes), ev.unreadable) == (2, 1)
    folder = eval_data.image_folder(str(tmp_path), {})
    eval_data.image_embeddings(folder, lambda x: x.mean(axis=(1, 2)), 16)
    assert folder.size == 2 and folder.unreadable == ["a/bad.png (decode_error)"]
    assert "a/bad.png (decode_error)" in capsys.readouterr().err
    with pytest.raises(EntityNetError, match="shards are damaged"):
        decode_crop(data, centre_box, 16)


def _png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


class Odd(Exception):
    """An exception type no reader has heard of."""


@pytest.mark.parametrize(
    "error,reason",
    [
        (RuntimeError("decoder state"), "decode_error"),
        (KeyError("mode"), "decode_error"),  # at open, Pillow itself takes it for "not this format"
        (ZeroDivisionError("stride"), "decode_error"),
        (NotImplementedError("compression"), "decode_error"),
        (OverflowError("size"), "decode_error"),
        (RecursionError("nested"), "decode_error"),
        (Odd("new in the next Pillow"), "decode_error"),
        (MemoryError(), "too_large"),
        (Image.DecompressionBombError("bomb"), "too_large"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v,
)
@pytest.mark.parametrize("stage", ["open", "load"])
def test_any_exception_a_decoder_raises_is_one_reason(monkeypatch, error, reason, stage):
    data = _png(Image.new("RGB", (100, 80), (10, 200, 30)))
    assert process_image(data).width == 100  # the plugin works until it is broken below

    def broken(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "_open" if stage == "open" else "load", broken)
    if stage == "open" and isinstance(error, KeyError):
        reason = "not_an_image"
    tried("image-decoder", 4)
    with pytest.raises(ImageRejected) as e:
        process_image(data)
    assert e.value.reason == reason
    assert reason == "not_an_image" or type(error).__name__ in str(e.value)  # the detail names it
    with pytest.raises(ImageRejected) as e:
        thumbnail(data)
    assert e.value.reason == reason
    assert evalsets.hash_image(data, ImageOptions()) is None
    with pytest.raises(EntityNetError):
        decode_crop(data, centre_box, 16)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_is_not_a_decoder_failure(monkeypatch, stop):
    def interrupted(self, *args, **kwargs):
        raise stop()

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", interrupted)
    with pytest.raises(stop):
        decode(_png(Image.new("RGB", (8, 8))))


def test_a_rejection_survives_pickling_and_is_a_value_error():
    e = pickle.loads(pickle.dumps(ImageRejected("too_large", "9x9 pixels")))
    assert isinstance(e, ValueError) and e.reason == "too_large" and str(e) == "too_large: 9x9 pixels"
    with pytest.raises(ValueError, match="unknown rejection reason"):
        ImageRejected("spam")


# ---------------------------------------------------------------- memory per pixel


def _scale(a: np.ndarray, mode: str) -> float:
    """The depth rule of `prepare`: 16 bits (or a 16-bit range) /257, floats in 0..1 x255."""
    top = float(np.nanmax(a)) if not np.isnan(a).all() else float("nan")
    if mode.startswith("I;16") or top > 255:
        return 1 / 257
    return 255.0 if mode == "F" and top <= 1.0 else 1.0


def _to_eight(a: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.nan_to_num(np.rint(a.astype(np.float64) * scale)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "mode,values",
    [
        ("I;16", lambda r: r.integers(0, 65536, (37, 53)).astype(np.uint16)),
        ("I", lambda r: r.integers(-5, 200, (37, 53)).astype(np.int32)),
        ("I", lambda r: r.integers(0, 1 << 20, (37, 53)).astype(np.int32)),
        ("F", lambda r: r.random((37, 53)).astype(np.float32)),
        (
            "F",
            lambda r: np.where(r.random((37, 53)) < 0.1, np.nan, r.random((37, 53)) * 900).astype(np.float32),
        ),
    ],
)
def test_high_bit_depth_converts_in_blocks_as_the_whole_image_would(monkeypatch, mode, values):
    a = values(np.random.default_rng(3))
    im = Image.fromarray(a)
    assert im.mode == mode
    monkeypatch.setattr(prep, "_BLOCK_PIXELS", 4 * 53)  # ten blocks of four rows
    scale = _scale(a, mode)  # decided over the whole image, not per block
    assert np.array_equal(np.asarray(prep._high_depth_to_l(im)), _to_eight(a, scale))
    # reduced by 3 while converting: the mean of each 3x3 box (the partial ones at the edges too)
    small = np.asarray(prep._high_depth_to_l(im, 3))
    assert small.shape == (13, 18)
    if not np.isnan(a).any():
        boxes = np.asarray(Image.fromarray(a.astype(np.float32), "F").reduce(3))  # Pillow's own means
        assert np.abs(small.astype(int) - _to_eight(boxes, scale).astype(int)).max() <= 1


def test_a_big_high_depth_image_is_harvested_like_its_8_bit_twin():
    y, x = np.mgrid[:900, :1200]
    sixteen = (x * 30 + y * 30).astype(np.uint16)
    eight = np.rint(sixteen / 257).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated: width and height swap
    pngs = []
    for a in (sixteen, eight):
        out = io.BytesIO()
        Image.fromarray(a).save(out, "PNG", exif=exif)
        pngs.append(out.getvalue())
    assert Image.open(io.BytesIO(pngs[0])).mode == "I;16"
    deep, plain = (process_image(d) for d in pngs)
    assert (deep.width, deep.height) == (plain.width, plain.height) == (256, 341)
    a, b = (np.asarray(Image.open(io.BytesIO(r.jpeg)).convert("L"), np.int16) for r in (deep, plain))
    assert np.abs(a - b).max() <= 4  # the same picture, reduced before its depth was converted


MEASURE = textwrap.dedent(
    """
    import resource, sys
    from entitynet.images.decode import decode
    from entitynet.images.process import process_image
    data = open(sys.argv[1], "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decode(data)  # the whole image, as evaluation decodes it
    process_image(data)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """
)


def test_a_high_depth_decode_costs_about_what_an_8_bit_one_does(tmp_path):
    """A 16-bit greyscale PNG of 3000x3000 (a few dozen KB) once cost 8x its 8-bit RGB twin's
    pixels in float64 copies; its peak memory is now within 2.5x of them."""
    side = 3000
    ramp = np.repeat(np.linspace(0, 65535, side).astype(np.uint16)[:, None], side, 1)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path, compress_level=1)
    assert path.stat().st_size < 2_000_000 and Image.open(path).mode == "I;16"
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    peak = int(run.stdout.split()[-1])
    rgb_pixels = side * side * 4  # Pillow holds RGB as 4 bytes a pixel
    tried("image-memory")
    assert peak < 2.5 * rgb_pixels, f"{peak / rgb_pixels:.1f}x an 8-bit RGB image"


# ---------------------------------------------------------------- ImageFolder: hidden and duplicate classes


def _image(path: Path, colour=(120, 40, 200)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png(Image.new("RGB", (40, 30), colour)))


def test_hidden_folders_and_files_are_not_classes_or_images(tmp_path):
    for cls in ("cat", "dog"):
        _image(tmp_path / cls / "1.png")
    _image(tmp_path / "cat" / ".hidden.png")
    _image(tmp_path / ".ipynb_checkpoints" / "cat-checkpoint.png")
    _image(tmp_path / ".DS_Store" / "x.png")
    _image(tmp_path / "dog" / ".ipynb_checkpoints" / "1-checkpoint.png")
    tried("imagefolder", 4)
    data = eval_data.image_folder(str(tmp_path), {})
    assert data.classes == [["cat"], ["dog"]] and data.size == 2
    assert [data.ref(i) for i in range(2)] == ["cat/1.png", "dog/1.png"]
    ev = evalsets.load(str(tmp_path))  # decontamination walks any depth: hidden trees stay out
    assert sorted(ev.refs) == ["cat/1.png", "dog/1.png"]


@pytest.mark.parametrize(
    "pair,why",
    [
        (("Lion", "lion "), "both are named 'lion"),
        (("red_fox", "Red Fox"), "both are named"),
        (("lion", "LION"), "both are named"),
    ],
)
def test_two_folders_of_one_name_are_refused(tmp_path, pair, why):
    for name in (*pair, "tiger"):
        _image(tmp_path / name / "1.png")
    tried("imagefolder")
    with pytest.raises(ConfigError) as e:
        eval_data.image_folder(str(tmp_path), {})
    message = str(e.value)
    assert "\n" not in message and why in message
    assert all(repr(p) in message for p in pair) and "labels.tsv" in message and "merge them" in message


def test_an_entity_id_folder_and_its_label_folder_are_one_class(tmp_path, sample_entities):
    by_id = {e.id: e for e in sample_entities}
    one, other = sample_entities[0], sample_entities[1]
    for name in (one.id, one.label, other.id):
        _image(tmp_path / name / "1.png")
    tried("imagefolder", 3)
    with pytest.raises(ConfigError, match=f"both are entity {one.id}") as e:
        eval_data.image_folder(str(tmp_path), by_id)
    assert repr(one.id) in str(e.value) and repr(one.label) in str(e.value)
    # the fix the message names: a labels.tsv giving the label folder a class of its own
    (tmp_path / "labels.tsv").write_text(f"{one.label}\tsomething else entirely\n")
    data = eval_data.image_folder(str(tmp_path), by_id)
    assert len(data.classes) == 3
    # --class-names that name two folders alike: the file is what to fix
    names = tmp_path / "names.txt"
    names.write_text("cat\nCat\ndog\n")
    with pytest.raises(ConfigError, match=f"different lines in {names}"):
        eval_data.image_folder(str(tmp_path), by_id, class_names=str(names))


def test_the_eval_pixels_of_a_set_with_a_broken_image_name_it(tmp_path):
    """Without a place to count them (a caller of `pixels` alone), a broken image is one line."""
    _image(tmp_path / "a" / "1.png")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.png").write_bytes(dds_128())
    data = eval_data.image_folder(str(tmp_path), {})
    with ThreadPoolExecutor(1) as pool, pytest.raises(ConfigError, match=r"image b/2.png is not readable"):
        eval_data.pixels(data, range(2), 16, pool)


def test_eps_never_reaches_an_interpreter():
    """EPS is PostScript, a programming language: Pillow would hand it to Ghostscript. It is not
    an image we read, whatever the reader."""
    from entitynet.images.decode import FORMATS, ImageRejected, open_image

    tried("image-decoder")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n0 0 moveto 64 64 lineto stroke\nshowpage\n"
    Image.open(io.BytesIO(eps)).close()  # Pillow itself recognises it
    assert "EPS" not in FORMATS and {"JPEG", "PNG", "GIF", "WEBP", "TIFF"} <= set(FORMATS)
    with pytest.raises(ImageRejected) as e:
        open_image(eps)
    assert e.value.reason == "not_an_image"
