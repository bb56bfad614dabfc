"""``glyphs``: a procedural, Synbols-like image dataset rendered from the TrueType fonts matplotlib ships.

Classes are characters, domains are font faces + colour palettes + background textures, and every image
gets a random rotation / scale / translation. Everything is deterministic for a seed, runs offline on a
couple of CPU cores and is cached on disk (:func:`load_glyphs`).

Two disjoint halves, so a model can be pretrained without ever seeing benchmark material:

* **Characters.** :data:`BENCHMARK_CHARS` (100 digits, Latin and Greek letters) are the classes benchmarks
  use; :data:`PRETRAIN_CHARS` (87 Cyrillic letters and symbols) are for pretraining a backbone (like ImageNet
  for a ViT). No character of one set looks like a character of the other, and within each set there are no
  homoglyphs or case pairs that differ only by size (``tests/test_glyphs.py`` checks it).
* **Domains.** :data:`BENCHMARK_DOMAINS` use the *upright* DejaVu and STIX faces, "ink"/"paper" colours and
  plain/gradient/stripes/checker backgrounds; :data:`PRETRAIN_DOMAINS` use the *slanted* DejaVu faces, other
  colours and other textures (radial, noise, dots, rings, waves). A CLIP-style model can therefore be
  pretrained on captions of *all* characters (benchmark ones included) rendered in pretraining domains and
  still never see a benchmark image.

Rendering: each (face, character) is rasterised once with ``matplotlib.ft2font.FT2Font`` into a centred
mask at a fixed em size (cached in memory); the per-sample work (affine jitter, antialiased downsampling,
textures, colourisation) is done in batched torch ops.

Over 400 lines: the generator is one unit (font faces, the two character sets, the domains'
palettes and textures, and the renderer that combines them); nothing else uses its parts, and
the tables that define the disjoint halves read best next to each other.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import tempfile
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import ft2font

from ..core.files import cache_dir as _default_cache_dir

log = logging.getLogger(__name__)

#: Bump whenever a change alters the generated pixels or attributes (invalidates on-disk caches).
GENERATOR_VERSION = 1

# ----------------------------------------------------------------------------------------------------------
# Fonts
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    """One TrueType face from ``matplotlib/mpl-data/fonts/ttf``.

    ``family``/``weight``/``slant`` are the words used in captions. ``unicode=False`` marks the BaKoMa
    Computer Modern fonts, whose charmap is *not* Unicode beyond ASCII letters and digits (e.g. code
    U+00A1 holds "Gamma"); for those we look glyphs up by PostScript glyph name instead.
    """

    file: str
    family: str
    weight: str = "regular"  # "regular" | "bold"
    slant: str = "upright"  # "upright" | "italic" | "oblique"
    unicode: bool = True


# (key stem, caption family, slant word, files of the regular, bold, slanted and bold slanted faces)
_FAMILIES = (
    ("sans", "dejavu sans", "oblique", "DejaVuSans DejaVuSans-Bold DejaVuSans-Oblique DejaVuSans-BoldOblique"),
    ("serif", "dejavu serif", "italic", "DejaVuSerif DejaVuSerif-Bold DejaVuSerif-Italic DejaVuSerif-BoldItalic"),
    ("mono", "dejavu sans mono", "oblique",
     "DejaVuSansMono DejaVuSansMono-Bold DejaVuSansMono-Oblique DejaVuSansMono-BoldOblique"),
    ("stix", "stix", "italic", "STIXGeneral STIXGeneralBol STIXGeneralItalic STIXGeneralBolIta"),
)  # fmt: skip

#: All faces by key: "<family>", "<family>-b" (bold), "<family>-i" (slanted), "<family>-bi", and the five
#: Computer Modern text fonts.
FACES: dict[str, Face] = {
    f"{stem}{suffix}": Face(f"{file}.ttf", family, weight, slant)
    for stem, family, slanted, files in _FAMILIES
    for suffix, file, weight, slant in zip(
        ("", "-b", "-i", "-bi"),
        files.split(),
        ("regular", "bold") * 2,
        ("upright", "upright", slanted, slanted),
    )
}
FACES.update(
    {
        # Computer Modern (BaKoMa): only ASCII letters/digits + Greek capitals; see Face.unicode.
        "cmr": Face("cmr10.ttf", "computer modern", unicode=False),
        "cmb": Face("cmb10.ttf", "computer modern", weight="bold", unicode=False),
        "cmti": Face("cmti10.ttf", "computer modern", slant="italic", unicode=False),
        "cmss": Face("cmss10.ttf", "computer modern sans", unicode=False),
        "cmtt": Face("cmtt10.ttf", "computer modern typewriter", unicode=False),
    }
)

# Glyph names of the Greek capitals that the Computer Modern text fonts carry (at non-Unicode codes).
_CM_GREEK = dict(zip("ΓΔΘΛΞΠΣΥΦΨΩ", "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()))


def font_dir() -> Path:
    """Directory of the TrueType fonts bundled with the installed matplotlib."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def _ft(file: str) -> ft2font.FT2Font:
    return ft2font.FT2Font(str(font_dir() / file))


def _glyph_index(face: Face, ch: str) -> int | None:
    """Index of the glyph that draws ``ch`` in ``face``, or None if the face does not have it."""
    font = _ft(face.file)
    if face.unicode:
        gid = font.get_char_index(ord(ch))
    elif ch.isascii() and ch.isalnum():  # BaKoMa fonts keep ASCII letters and digits at their ASCII codes
        gid = font.get_char_index(ord(ch))
    elif ch in _CM_GREEK:
        gid = font.get_name_index(_CM_GREEK[ch])
    else:
        gid = 0
    return gid or None  # glyph 0 is .notdef, i.e. "missing"


def face_covers(face: Face, ch: str) -> bool:
    """Whether ``face`` has a glyph for character ``ch``."""
    return _glyph_index(face, ch) is not None


# Glyph geometry on the template canvas (fractions of the image side): the em square is 75% of the image
# (a capital is then ~55% tall, a lowercase x-height ~40%), so relative sizes (x-height vs cap height) are
# kept; glyphs whose ink box would exceed 80% of the side (wide W, Ш, ...) are shrunk to fit.
_EM = 0.75
_FIT = 0.80


def _raster(face: Face, gid: int, px: float) -> np.ndarray:
    """FreeType coverage bitmap (uint8) of one glyph at ``px`` pixels per em, cropped to its ink."""
    font = _ft(face.file)
    font.set_size(px, 72)  # 72 dpi: points == pixels
    # By glyph index (not set_text): no text shaping, so e.g. BaKoMa's Omega at U+00AD (a soft hyphen,
    # "default ignorable" for a shaper) still draws. No hinting: it distorts outlines at small sizes.
    glyph = font.load_glyph(gid, flags=ft2font.LoadFlags.NO_HINTING)
    # draw_glyph_to_bitmap puts the bitmap at x + (left bearing), so shift by the bbox's x-min (26.6 fixed
    # point) to keep glyphs with negative or large bearings (italic descenders, narrow mono glyphs) inside.
    xmin, _, xmax, _ = glyph.bbox
    pad = 4
    left = math.floor(xmin / 64)
    buf = np.zeros((math.ceil(glyph.height / 64) + 2 * pad, math.ceil(xmax / 64) - left + 2 * pad), np.uint8)
    font.draw_glyph_to_bitmap(buf, pad - left, pad, glyph, antialiased=True)
    rows, cols = np.nonzero(buf)
    if len(rows) == 0:
        return np.zeros((0, 0), np.uint8)
    return buf[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


@functools.lru_cache(maxsize=4096)  # 4096 masks: 16 MB at 32 px (64x64 masks), 200 MB at 224 px
def _template(face: Face, ch: str, res: int) -> torch.Tensor:
    """Antialiased coverage mask of ``ch`` in ``face``: uint8 [res, res] (255 = ink), ink box centred.

    Rendered at a fixed em size (so glyphs keep their natural relative size) directly at the resolution
    it will be sampled at, which FreeType antialiases far better than any later resize would.
    """
    gid = _glyph_index(face, ch)
    if gid is None:
        raise ValueError(f"font {face.file} has no glyph for {ch!r} ({char_name(ch)})")
    ink = _raster(face, gid, _EM * res)
    if max(ink.shape) > _FIT * res:
        ink = _raster(face, gid, _EM * res * _FIT * res / max(ink.shape))[:res, :res]
    out = np.zeros((res, res), np.uint8)
    h, w = ink.shape
    top, left = (res - h) // 2, (res - w) // 2
    out[top : top + h, left : left + w] = ink
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------------------
# Characters
# ----------------------------------------------------------------------------------------------------------


def char_name(ch: str) -> str:
    """Lower-cased Unicode name, e.g. ``"latin capital letter a"``, ``"greek small letter alpha"``."""
    try:
        return unicodedata.name(ch).lower()
    except ValueError:
        return f"character u+{ord(ch):04x}"


def char_script(ch: str) -> str:
    """Coarse script of a character: ``digit``, ``latin``, ``greek``, ``cyrillic`` or ``symbol``."""
    if ch.isdigit():
        return "digit"
    first = char_name(ch).split()[0]
    if ch.isalpha() and first in ("latin", "greek", "cyrillic"):
        return first
    return "symbol"


def char_case(ch: str) -> str:
    """``upper``, ``lower`` or ``none`` (digits, symbols, caseless letters)."""
    cat = unicodedata.category(ch)
    return {"Lu": "upper", "Ll": "lower"}.get(cat, "none")


# The benchmark classes, in a fixed order (class index = position). 100 characters:
#   10 digits, 25 Latin capitals, 17 Latin small letters, 9 Greek capitals, 16 Greek small letters,
#   18 extended Latin letters, 5 archaic Greek letters.
# Left out so that no two classes look alike (after the scale/rotation jitter and in every font used):
#   * Greek capitals identical to Latin ones (Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ) and ο (= o).
#   * case pairs that differ only by size: c s v w x z (keep C S V W X Z); O (keep o; O vs 0 differ only in
#     width and DejaVu Sans Mono's O is as narrow as its 0); κ (a small-capital K).
#   * l (a bare bar like I), j (DejaVu Sans's J also descends: j = J + dot), u (U with a spur).
#   * γ (~Y), δ (~6), θ and Θ (~ the dotted 0 of DejaVu Sans Mono), ν (~v), ρ (~p), ψ (~φ in mono), χ (~X).
#   * œ (~æ), ø (a smaller Ø), Đ (same glyph as Ð), ŋ (~η), ʒ (~3), Ϛ (~ς), ϙ (a smaller Ϙ), Ϝ (= F), and the
#     variant forms ϑ ϕ ϖ ϰ ϱ ϵ (they *are* θ φ π κ ρ ε).
# tests/test_glyphs.py re-checks this with an outline-distance test in every benchmark and pretraining face.
# Rotating by ~180° maps some kept pairs onto each other (6/9, b/q, d/p, M/W), so keep rotation jitter < 90°.
_BENCHMARK_GROUPS = {
    "digits": "0123456789",
    "latin capitals": "ABCDEFGHIJKLMNPQRSTUVWXYZ",
    "latin small": "abdefghikmnopqrty",
    "greek capitals": "ΓΔΛΞΠΣΦΨΩ",
    "greek small": "αβεζηιλμξπσςτυφω",
    "latin extended": "ÆæŒØßÞþÐĦħŁłđŦŧƀƒɨ",
    "greek archaic": "ϘϞϟϠϡ",
}
BENCHMARK_CHARS: tuple[str, ...] = tuple("".join(_BENCHMARK_GROUPS.values()))

# Classes for pretraining a backbone: 87 characters no benchmark uses and none of which looks like a digit,
# a Latin or a Greek letter (not even rotated by 90°/180°/270°): 21 Cyrillic letters (those with Latin/Greek
# look-alikes, e.g. А В Е К М Н О Р С Т Х Г П Ф З б, are left out) and 66 symbols (ASCII, Latin-1, arrows,
# maths). Picked greedily from all glyphs the pretraining and benchmark faces share, dropping near-duplicates
# (also within this set: e.g. ∑ = Σ, ∏ = Π, ∆ = Δ, ∈ ~ ε, ∪ ~ U, ⊛ ~ ⊗, dotted variants of =, tiny punctuation).
_PRETRAIN_GROUPS = {
    "cyrillic": "БДЖИЛЦЧЩЪЫЬЭЮЯЂЋЉЊЏђф",
    "ascii and latin-1 symbols": "#$%&(*+/=?@[{~¢£¤¥¦§©«¬®±¶×†‡‰€",
    "arrows and maths": "↔↖↞↤↩↬↯↰↺↻⇄⇌⇐⇔∂√∝∟∠≈≡≤≥⊕⊗⊙⊞⊠⊡⊢⋄⌂⌐␣♮",
}
PRETRAIN_CHARS: tuple[str, ...] = tuple("".join(_PRETRAIN_GROUPS.values()))

# ----------------------------------------------------------------------------------------------------------
# Colours and textures
# ----------------------------------------------------------------------------------------------------------

_INK = ("black", "navy", "dark green", "maroon", "purple", "brown", "dark grey")  # benchmark darks
_PAPER = ("white", "light grey", "light blue", "light green", "pink", "pale yellow", "lavender")  # lights
_PRETRAIN_COLOURS = (
    "red", "orange", "yellow", "green", "blue", "cyan", "magenta", "grey", "teal", "olive", "violet",
    "sky blue", "salmon", "charcoal", "indigo", "cream", "mint", "peach", "khaki", "crimson", "turquoise",
)  # fmt: skip

#: Named sRGB colours. Benchmark domains use the "ink"/"paper" colours, pretraining domains the others.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "navy": (20, 30, 120),
    "dark green": (10, 90, 30),
    "maroon": (120, 20, 30),
    "purple": (100, 30, 120),
    "brown": (110, 60, 20),
    "dark grey": (70, 70, 70),
    "white": (255, 255, 255),
    "light grey": (205, 205, 205),
    "light blue": (170, 205, 240),
    "light green": (180, 235, 170),
    "pink": (250, 195, 210),
    "pale yellow": (250, 240, 160),
    "lavender": (215, 200, 245),
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 215, 30),
    "green": (40, 160, 60),
    "blue": (30, 80, 220),
    "cyan": (40, 200, 220),
    "magenta": (210, 40, 180),
    "grey": (128, 128, 128),
    "teal": (0, 128, 128),
    "olive": (128, 128, 0),
    "violet": (140, 60, 220),
    "sky blue": (135, 200, 235),
    "salmon": (250, 128, 114),
    "charcoal": (45, 50, 60),
    "indigo": (60, 20, 120),
    "cream": (255, 248, 215),
    "mint": (185, 245, 205),
    "peach": (255, 205, 165),
    "khaki": (215, 205, 135),
    "crimson": (165, 10, 40),
    "turquoise": (60, 225, 200),
}

_BENCHMARK_TEXTURES = ("plain", "gradient", "stripes", "checker")
_PRETRAIN_TEXTURES = ("radial", "noise", "dots", "rings", "waves")
#: Background textures (benchmark domains use the first four, pretraining domains the other five).
TEXTURES: tuple[str, ...] = _BENCHMARK_TEXTURES + _PRETRAIN_TEXTURES

#: Caption adjective of each texture ("red on a light blue and white striped background").
TEXTURE_WORDS: dict[str, str] = {
    "plain": "plain",
    "gradient": "gradient",
    "stripes": "striped",
    "checker": "checkered",
    "radial": "radial gradient",
    "noise": "mottled",
    "dots": "polka-dot",
    "rings": "ringed",
    "waves": "wavy",
}


def luma(colour: str) -> float:
    """Rec. 601 luma of a named colour in [0, 1]. Linear in RGB, so any mix of two colours that are both at
    least ``c`` away from the foreground (on the same side) is too: the contrast guarantee survives textures."""
    r, g, b = COLOURS[colour]
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


# ----------------------------------------------------------------------------------------------------------
# Domains
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """A rendering domain: which faces, which foreground/background colours, which background textures.

    Every sample picks, uniformly, one face, one texture and one (fg, bg, bg2) colour triple from
    :meth:`colour_triples`; bg2 is the second colour of textured backgrounds.
    """

    faces: tuple[str, ...]  # keys of FACES
    fg: tuple[str, ...]  # keys of COLOURS
    bg: tuple[str, ...]
    textures: tuple[str, ...]  # members of TEXTURES
    min_contrast: float = 0.35  # minimum |luma(fg) - luma(background)| anywhere in the background

    def colour_triples(self) -> tuple[tuple[str, str, str], ...]:
        """All (fg, bg, bg2) with both backgrounds on the same side of fg in luma, at least ``min_contrast``
        away from it and closer to each other than to it (bg != bg2 unless the palette has one background):
        the glyph is always clearly visible, whatever the texture."""
        return _colour_triples(self)


@functools.cache
def _colour_triples(dom: Domain) -> tuple[tuple[str, str, str], ...]:
    out = []
    for f in dom.fg:
        for b in dom.bg:
            for b2 in dom.bg:
                d1, d2 = luma(b) - luma(f), luma(b2) - luma(f)
                near = min(abs(d1), abs(d2))
                # The two background colours must also be closer to each other than to the glyph (half the
                # glyph contrast), so that a texture never out-shouts the character.
                distinct = b != b2 or len(dom.bg) == 1  # a single-colour palette can only be plain
                if distinct and d1 * d2 > 0 and near >= dom.min_contrast and abs(d1 - d2) <= near / 2:
                    out.append((f, b, b2))
    return tuple(out)


_UPRIGHT = ("sans", "sans-b", "serif", "serif-b", "mono", "mono-b", "stix", "stix-b")
_CLEAN = ("plain", "gradient")

#: All named domains. See BENCHMARK_DOMAINS / PRETRAIN_DOMAINS / EXTRA_DOMAINS for their roles.
DOMAINS: dict[str, Domain] = {
    # Benchmark side: upright faces, dark "ink" on light "paper" (or the reverse), textures plain..checker.
    "sans": Domain(("sans", "sans-b"), _INK, _PAPER, _CLEAN),
    "serif": Domain(("serif", "serif-b"), _INK, _PAPER, _CLEAN),
    "mono": Domain(("mono", "mono-b"), _INK, _PAPER, _CLEAN),
    "stix": Domain(("stix", "stix-b"), _INK, _PAPER, _CLEAN),
    "night": Domain(_UPRIGHT, _PAPER, _INK, _CLEAN),  # polarity shift: light glyphs on dark backgrounds
    "pattern": Domain(_UPRIGHT, _INK, _PAPER, ("stripes", "checker")),  # background-clutter shift
    # Pretraining side: slanted DejaVu faces, other colours (both polarities), other textures.
    "sans-oblique": Domain(("sans-i", "sans-bi"), _PRETRAIN_COLOURS, _PRETRAIN_COLOURS, _PRETRAIN_TEXTURES),
    "serif-italic": Domain(("serif-i", "serif-bi"), _PRETRAIN_COLOURS, _PRETRAIN_COLOURS, _PRETRAIN_TEXTURES),
    "mono-oblique": Domain(("mono-i", "mono-bi"), _PRETRAIN_COLOURS, _PRETRAIN_COLOURS, _PRETRAIN_TEXTURES),
    # Extra held-out domains (never used for pretraining), for additional out-of-distribution tests.
    "stix-italic": Domain(("stix-i", "stix-bi"), _INK, _PAPER, _CLEAN),
    "cm": Domain(("cmr", "cmb", "cmti", "cmss", "cmtt"), _INK, _PAPER, _CLEAN),
}

#: Domains benchmarks use: four font families (domain-incremental / font shift) plus a polarity shift and a
#: background-clutter shift. They cover BENCHMARK_CHARS and PRETRAIN_CHARS.
BENCHMARK_DOMAINS: tuple[str, ...] = ("sans", "serif", "mono", "stix", "night", "pattern")
#: Domains for pretraining. No face, colour or texture in common with BENCHMARK_DOMAINS, so a model pretrained
#: on any characters (benchmark ones included, e.g. for CLIP captions) in these never saw a benchmark image.
#: The STIX family is not used at all, so "stix" is an unseen font family. They cover both character sets.
PRETRAIN_DOMAINS: tuple[str, ...] = ("sans-oblique", "serif-italic", "mono-oblique")
#: Held-out domains that cannot render every character. "stix-italic" (STIX slanted faces) lacks the maths
#: symbols of PRETRAIN_CHARS; "cm" (Computer Modern, BaKoMa fonts) only has ASCII letters/digits and the Greek
#: capitals: use them with ``domain_chars(name)``.
EXTRA_DOMAINS: tuple[str, ...] = ("stix-italic", "cm")


def domain_chars(domain: str, chars: Sequence[str] = BENCHMARK_CHARS) -> tuple[str, ...]:
    """The characters of ``chars`` that every face of ``domain`` can draw (order kept)."""
    faces = [FACES[f] for f in DOMAINS[domain].faces]
    return tuple(c for c in chars if all(face_covers(f, c) for f in faces))


# ----------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Jitter:
    """Per-sample geometric jitter, drawn uniformly. The defaults are moderate on purpose: glyphs stay
    upright-ish (6/9, b/q, d/p would collide beyond ±90°) and inside the image."""

    rotation: float = 15.0  # max |angle| in degrees (positive = counter-clockwise)
    scale: tuple[float, float] = (0.8, 1.1)  # glyph size relative to the nominal em (75% of the image side)
    translate: float = 0.1  # max |shift| per axis, as a fraction of the image side

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (self.rotation >= 0 and 0 < lo <= hi and self.translate >= 0):
            raise ValueError(
                f"invalid jitter {self}: need rotation >= 0, 0 < scale[0] <= scale[1], translate >= 0"
            )


# Per-sample uniforms, one row per sample (see _params): face, colours, texture, rotation, scale, dx, dy,
# then six texture parameters. Drawing a fixed-width [n, K] block makes the first rows independent of n.
_N_UNIFORMS = 13
_NOISE_GRID = 6  # the "noise" texture is bicubically upsampled from a 6x6 grid of uniforms


def _params(name: str, dom: Domain, ch: str, n: int, seed: int, jitter: Jitter) -> dict[str, np.ndarray]:
    """Random parameters of the n samples of (domain ``name``, character ``ch``).

    Seeded by (seed, domain name, code point) alone, so a sample does not depend on which other classes or
    domains are rendered with it, nor on n (the first k of n samples equal the k samples of a smaller call).
    """
    key = [seed, zlib.crc32(name.encode()), ord(ch)]
    u = np.random.default_rng(np.random.SeedSequence(key)).random((n, _N_UNIFORMS))
    triples = dom.colour_triples()

    def pick(col: int, k: int) -> np.ndarray:
        return np.minimum((u[:, col] * k).astype(np.int64), k - 1)

    lo, hi = jitter.scale
    p = {
        "face": pick(0, len(dom.faces)),
        "colours": pick(1, len(triples)),
        "texture": np.array([TEXTURES.index(t) for t in dom.textures])[pick(2, len(dom.textures))],
        "rotation": (2 * u[:, 3] - 1) * jitter.rotation,
        "scale": lo + u[:, 4] * (hi - lo),
        "dx": (2 * u[:, 5] - 1) * jitter.translate,
        "dy": (2 * u[:, 6] - 1) * jitter.translate,
        "tex": u[:, 7:],  # texture parameters, interpreted in _texture
    }
    if "noise" in dom.textures:
        rng = np.random.default_rng(np.random.SeedSequence([*key, 1]))
        p["noise"] = rng.random((n, _NOISE_GRID, _NOISE_GRID))
    else:
        p["noise"] = np.zeros((n, _NOISE_GRID, _NOISE_GRID))
    return p


def _texture(kind: torch.Tensor, tp: torch.Tensor, noise: torch.Tensor, size: int) -> torch.Tensor:
    """Background mixing weights t in [0, 1], [B, size, size] (0 = bg colour, 1 = bg2 colour).

    kind: [B] index into TEXTURES; tp: [B, 6] uniforms (angle, frequency, phase, amplitude, x, y);
    noise: [B, g, g] uniforms. All textures are smooth functions sampled at pixel centres, so they are
    antialiased at any size; frequencies stay below ~5 cycles per image so 16-px images still resolve them.
    """
    b = kind.shape[0]
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    y, x = c.view(1, -1, 1), c.view(1, 1, -1)
    ang, freq, phase, amp, px, py = (tp[:, i].view(-1, 1, 1).float() for i in range(6))
    ang, phase = ang * 2 * math.pi, phase * 2 * math.pi
    freq = 2 + 2.5 * freq  # cycles across the image
    w = math.pi * freq  # angular frequency (the image spans 2 units)
    u = x * torch.cos(ang) + y * torch.sin(ang)  # coordinates rotated by the texture angle
    v = -x * torch.sin(ang) + y * torch.cos(ang)
    r = torch.sqrt((x - 1.6 * px + 0.8) ** 2 + (y - 1.6 * py + 0.8) ** 2)  # distance to a random centre
    t = torch.zeros(b, size, size)
    for k, name in enumerate(TEXTURES):
        sel = kind == k
        if not bool(sel.any()) or name == "plain":
            continue
        if name == "gradient":
            f = (u / math.sqrt(2) + 1) / 2
        elif name == "stripes":
            f = torch.sigmoid(4 * torch.sin(w * u + phase))
        elif name == "checker":
            f = torch.sigmoid(6 * torch.sin(w * u + phase) * torch.sin(w * v + phase))
        elif name == "radial":
            f = (r / 2).clamp(0, 1)
        elif name == "noise":
            f = F.interpolate(noise[:, None].float(), size=(size, size), mode="bicubic", align_corners=True)
            f = f[:, 0]
            lo, hi = f.amin((1, 2), keepdim=True), f.amax((1, 2), keepdim=True)
            f = (f - lo) / (hi - lo + 1e-6)
        elif name == "dots":  # discs on a rotated lattice; 1-px soft edge
            cell = size / freq  # lattice spacing in pixels
            fu, fv = torch.frac(u * freq / 2 + px + 10) - 0.5, torch.frac(v * freq / 2 + py + 10) - 0.5
            radius = 0.2 + 0.15 * py
            f = ((radius - torch.sqrt(fu**2 + fv**2)) * cell + 0.5).clamp(0, 1)
        elif name == "rings":
            f = torch.sigmoid(4 * torch.sin(w * r + phase))
        elif name == "waves":
            f = torch.sigmoid(4 * torch.sin(w * u + 1.5 * torch.sin(w / 2 * v + px * 6.3) + phase))
        else:  # pragma: no cover - TEXTURES and this switch are kept in sync by the tests
            raise ValueError(name)
        strength = 0.5 + 0.5 * amp  # how far towards bg2 the pattern goes: 50-100%
        t[sel] = (f.expand(b, size, size)[sel] * strength[sel]).clamp(0, 1)
    return t


def _supersample(size: int) -> int:
    """Supersampling factor for antialiasing: warp at ss*size, then average-pool ss x ss."""
    return 4 if size <= 16 else 2 if size <= 112 else 1


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------

_NUM_ATTRS = ("rotation", "scale", "dx", "dy")


@dataclass(frozen=True, eq=False)
class GlyphSet:
    """A rendered set of glyph images with labels, domains and per-sample attributes.

    ``attributes`` holds numpy arrays of length N: strings ``font`` (family, e.g. "dejavu serif"), ``face``
    (FACES key), ``weight``, ``slant``, ``fg``/``bg``/``bg2`` (colour names; bg2 is the second background colour,
    "" for plain backgrounds), ``texture``, ``script`` and ``case`` (of the character); floats ``rotation``
    (degrees, counter-clockwise), ``scale`` and ``dx``/``dy`` (shift as a fraction of the image side).
    """

    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray  # int64 [N], index into chars
    chars: tuple[str, ...]
    domains: np.ndarray  # int64 [N], index into domain_names
    domain_names: tuple[str, ...]
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def names(self) -> tuple[str, ...]:
        """Unicode names of the classes, e.g. "latin capital letter a" (aligned with ``chars``)."""
        return tuple(char_name(c) for c in self.chars)

    def subset(self, index: np.ndarray | Sequence[int] | slice) -> GlyphSet:
        """The samples selected by ``index`` (indices, boolean mask or slice); classes and domains are kept."""
        return dataclasses.replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            domains=self.domains[index],
            attributes={k: v[index] for k, v in self.attributes.items()},
        )

    def caption(self, i: int, rng: np.random.Generator | None = None) -> str:
        """Caption of sample ``i`` built from its attributes.

        Without ``rng``: the full, fixed form, e.g. "the latin capital letter q in bold italic dejavu serif,
        red on a light blue and white striped background". With ``rng``: attributes are randomly dropped and
        the phrases reordered / reworded (the character name is always there), so that a contrastive model
        learns each attribute word on its own rather than memorising whole sentences.
        """
        a = {k: str(self.attributes[k][i]) for k in ("font", "weight", "slant", "fg", "bg", "bg2", "texture")}
        name = char_name(self.chars[int(self.labels[i])])
        tex = TEXTURE_WORDS[a["texture"]]
        plain = a["texture"] == "plain"
        if rng is None:
            back = f"{a['bg']} and {a['bg2']} {tex}" if not plain else f"{tex} {a['bg']}"
            return (
                f"the {name} in {a['weight']} {a['slant']} {a['font']}, {a['fg']} on {_an(back)} background"
            )

        def keep(p: float = 0.6) -> bool:
            return bool(rng.random() < p)

        style = " ".join(w for w in (a["weight"], a["slant"]) if keep(0.5))
        font = " ".join(w for w in (style, a["font"] if keep() else "") if w)
        if font and font == style:
            font += " type"
        bg_words = []
        if keep():
            bg_words.append(a["bg"] if plain or not keep(0.5) else f"{a['bg']} and {a['bg2']}")
        if keep(0.5):  # "plain white" but "white and pink striped"
            bg_words.insert(0 if plain else len(bg_words), tex)
        back = f"on {_an(' '.join(bg_words))} background" if bg_words else ""
        fg = a["fg"] if keep() else ""
        if fg and back:
            colour = f"{fg} {back}" if keep(0.5) else f"written in {fg} {back}"
        else:
            colour = f"in {fg}" if fg else back
        parts = [p for p in (f"in {font}" if font else "", colour) if p]
        order = rng.permutation(len(parts)) if parts else []
        tail = ", ".join(parts[j] for j in order)
        head = ("the", "a picture of the", "an image of the", "a rendering of the", "")[int(rng.integers(5))]
        text = f"{head} {name}".strip()
        return f"{text}, {tail}" if tail else text

    def captions(self, rng: np.random.Generator | None = None) -> list[str]:
        """``caption(i, rng)`` for every sample."""
        return [self.caption(i, rng) for i in range(len(self))]


def _an(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _check_args(chars: Sequence[str], domains: Sequence[str], n: int, size: int, seed: int) -> None:
    if not chars or len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
        raise ValueError("chars must be a non-empty sequence of distinct single characters")
    if not domains or len(set(domains)) != len(domains):
        raise ValueError("domains must be a non-empty sequence of distinct domain names")
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        raise ValueError(f"unknown domains {unknown}; known: {sorted(DOMAINS)}")
    if n < 1 or size < 8 or seed < 0:
        raise ValueError("need n_per_class_per_domain >= 1, size >= 8 and seed >= 0")
    for d in domains:
        covered = set(domain_chars(d, chars))
        missing = [c for c in chars if c not in covered]
        if missing:
            raise ValueError(f"domain {d!r} has no glyph for {''.join(missing)!r}; see domain_chars()")


def render_glyphs(
    chars: Sequence[str],
    domains: Sequence[str],
    n_per_class_per_domain: int,
    *,
    size: int = 32,
    seed: int = 0,
    jitter: Jitter = Jitter(),
) -> GlyphSet:
    """Render ``n_per_class_per_domain`` images of every character in every domain (no disk cache).

    Samples are ordered by domain, then class, then sample. Output is bit-identical for the same arguments;
    each (seed, domain, character) has its own random stream (see :func:`_params`), so changing ``seed`` is
    the way to get an independent draw, e.g. a test split.
    """
    chars, domains = tuple(chars), tuple(domains)
    _check_args(chars, domains, n_per_class_per_domain, size, seed)
    n = n_per_class_per_domain
    ss = _supersample(size)
    res = ss * size  # templates are rendered at the supersampled output resolution

    # 1. Per-sample parameters (numpy, vectorised per (domain, char) block) and the distinct templates used.
    blocks: dict[str, list[np.ndarray]] = {}
    templates: list[torch.Tensor] = []
    tmpl_id: dict[tuple[str, str], int] = {}
    for dname in domains:
        dom = DOMAINS[dname]
        triples = np.array(dom.colour_triples())  # [T, 3] colour names
        triple_rgb = np.array([[COLOURS[c] for c in t] for t in triples], np.float32) / 255  # [T, 3, 3]
        face_info = np.array([[f, FACES[f].family, FACES[f].weight, FACES[f].slant] for f in dom.faces])
        for ch in chars:
            p = _params(dname, dom, ch, n, seed, jitter)
            for f in dom.faces:
                if (f, ch) not in tmpl_id:
                    tmpl_id[f, ch] = len(templates)
                    templates.append(_template(FACES[f], ch, res))
            cols = {
                "tmpl": np.array([tmpl_id[f, ch] for f in dom.faces])[p["face"]],
                "rgb": triple_rgb[p["colours"]],
                **dict(zip(("face", "font", "weight", "slant"), face_info[p["face"]].T)),
                **dict(zip(("fg", "bg", "bg2"), triples[p["colours"]].T)),
                **{k: p[k] for k in ("texture", "noise", "tex", *_NUM_ATTRS)},
            }
            for k, v in cols.items():
                blocks.setdefault(k, []).append(v)
    cat = {k: np.concatenate(v) for k, v in blocks.items()}
    total = len(cat["tmpl"])
    labels = np.tile(np.repeat(np.arange(len(chars), dtype=np.int64), n), len(domains))
    dom_idx = np.repeat(np.arange(len(domains), dtype=np.int64), len(chars) * n)

    # 2. Batched torch rendering: affine warp of the glyph mask, downsample, texture, colourise.
    rgb = torch.from_numpy(cat["rgb"])[..., None, None]  # [N, 3 (fg, bg, bg2), 3 (RGB), 1, 1]
    images = np.empty((total, size, size, 3), np.uint8)
    chunk = max(1, 2**22 // (res * res))  # ~4M warped pixels per batch keeps memory < ~100 MB
    with torch.no_grad():
        for s in range(0, total, chunk):
            sl = slice(s, min(s + chunk, total))
            x = (
                torch.stack([templates[i] for i in cat["tmpl"][sl]])[:, None].float() / 255
            )  # [B, 1, res, res]
            grid = _sampling_grid(cat["rotation"][sl], cat["scale"][sl], cat["dx"][sl], cat["dy"][sl], res)
            mask = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            mask = F.avg_pool2d(mask, ss) if ss > 1 else mask  # [B, 1, size, size], antialiased
            t = _texture(
                torch.from_numpy(cat["texture"][sl]),
                torch.from_numpy(cat["tex"][sl]),
                torch.from_numpy(cat["noise"][sl]),
                size,
            )[:, None]
            c = rgb[sl]
            img = torch.lerp(
                torch.lerp(c[:, 1], c[:, 2], t), c[:, 0], mask
            )  # bg -> bg2 by t, then -> fg by mask
            images[sl] = (img * 255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    attrs: dict[str, np.ndarray] = {k: cat[k] for k in ("font", "face", "weight", "slant", "fg", "bg")}
    attrs["bg2"] = np.where(cat["texture"] == TEXTURES.index("plain"), "", cat["bg2"])
    attrs["texture"] = np.array(TEXTURES)[cat["texture"]]
    attrs["script"] = np.array([char_script(c) for c in chars])[labels]
    attrs["case"] = np.array([char_case(c) for c in chars])[labels]
    attrs.update({k: cat[k].astype(np.float32) for k in _NUM_ATTRS})
    return GlyphSet(images, labels, chars, dom_idx, domains, attrs)


def _sampling_grid(
    rot: np.ndarray, scale: np.ndarray, dx: np.ndarray, dy: np.ndarray, res: int
) -> torch.Tensor:
    """``grid_sample`` grid [B, res, res, 2]: for each output pixel, where to read in the template.

    Forward transform: rotate counter-clockwise (on screen, y down) by ``rot`` degrees, scale by ``scale``,
    shift by (dx, dy) image sides. The grid is its inverse, p = R^T (p' - t) / s, at the output pixel centres
    in normalised [-1, 1] coordinates: what ``affine_grid(theta, align_corners=False)`` computes, done as one
    matmul with a cached base grid (twice as fast on CPU).
    """
    a = np.deg2rad(rot)
    c, s = np.cos(a) / scale, np.sin(a) / scale
    tx, ty = 2 * dx, 2 * dy  # one image side is 2 normalised units
    theta = np.stack([np.stack([c, -s, s * ty - c * tx], -1), np.stack([s, c, -s * tx - c * ty], -1)], 1)
    grid = _base_grid(res) @ torch.from_numpy(theta.astype(np.float32)).transpose(1, 2)  # [B, res*res, 2]
    return grid.view(-1, res, res, 2)


@functools.lru_cache(maxsize=8)
def _base_grid(res: int) -> torch.Tensor:
    """[1, res*res, 3] homogeneous (x, y, 1) pixel-centre coordinates in [-1, 1], row-major."""
    p = (torch.arange(res, dtype=torch.float32) + 0.5) / res * 2 - 1
    y, x = torch.meshgrid(p, p, indexing="ij")
    return torch.stack([x, y, torch.ones_like(x)], -1).view(1, res * res, 3)


# ----------------------------------------------------------------------------------------------------------
# Disk cache
# ----------------------------------------------------------------------------------------------------------


def _cache_key(
    chars: tuple[str, ...], domains: tuple[str, ...], n: int, size: int, seed: int, jitter: Jitter
) -> str:
    """Hash of everything that determines the output, including the domain/face/colour definitions and the
    library versions that rasterise (FreeType via matplotlib) and resample (torch)."""
    spec = {
        "version": GENERATOR_VERSION,
        "matplotlib": matplotlib.__version__,
        "freetype": ft2font.__freetype_version__,
        "torch": torch.__version__.split("+")[0],
        "chars": "".join(chars),
        "domains": {
            d: {
                "domain": dataclasses.asdict(DOMAINS[d]),
                "faces": [dataclasses.asdict(FACES[f]) for f in DOMAINS[d].faces],
                "colours": {c: COLOURS[c] for c in (*DOMAINS[d].fg, *DOMAINS[d].bg)},
            }
            for d in domains
        },
        "n": int(n),
        "size": int(size),
        "seed": int(seed),
        "jitter": dataclasses.asdict(jitter),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def load_glyphs(
    chars: Sequence[str],
    domains: Sequence[str],
    n_per_class_per_domain: int,
    *,
    size: int = 32,
    seed: int = 0,
    jitter: Jitter = Jitter(),
    cache_dir: str | Path | None = None,
) -> GlyphSet:
    """:func:`render_glyphs`, cached on disk as ``<cache_dir>/glyphs-<size>px-<hash>.npz``.

    ``cache_dir`` defaults to ``ctta.core.files.cache_dir() / "glyphs"``. The file name hashes all arguments and
    GENERATOR_VERSION; it is written atomically (temp file + ``os.replace``), so concurrent runs and crashes
    never leave a half-written file under the final name. An unreadable or mismatching file is regenerated.
    """
    chars, domains = tuple(chars), tuple(domains)
    _check_args(chars, domains, n_per_class_per_domain, size, seed)
    key = _cache_key(chars, domains, n_per_class_per_domain, size, seed, jitter)
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir() / "glyphs"
    path = folder / f"glyphs-{size}px-{key}.npz"
    if path.exists():
        loaded = _read(path, key, chars, domains)
        if loaded is not None:
            return loaded
    gs = render_glyphs(chars, domains, n_per_class_per_domain, size=size, seed=seed, jitter=jitter)
    _write(path, key, gs)
    return gs


def _read(path: Path, key: str, chars: tuple[str, ...], domains: tuple[str, ...]) -> GlyphSet | None:
    """Load a cache file; None (and a log warning) if it is corrupt, truncated or for other arguments."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or tuple(z["chars"]) != chars or tuple(z["domain_names"]) != domains:
                raise ValueError("cache key mismatch")
            attrs = {k[len("attr.") :]: z[k] for k in z.files if k.startswith("attr.")}
            gs = GlyphSet(z["images"], z["labels"], chars, z["domains"], domains, attrs)
        n = len(gs.labels)
        if gs.images.shape[0] != n or len(gs.domains) != n or any(len(v) != n for v in attrs.values()):
            raise ValueError("inconsistent array lengths")
        return gs
    except Exception as e:  # any failure to read (bad zip, missing key, bad shape) just means "regenerate"
        log.warning("ignoring unreadable glyph cache %s (%s: %s); regenerating", path, type(e).__name__, e)
        return None


def _write(path: Path, key: str, gs: GlyphSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "key": np.array(key),
        "images": gs.images,
        "labels": gs.labels,
        "chars": np.array(gs.chars),
        "domains": gs.domains,
        "domain_names": np.array(gs.domain_names),
        **{f"attr.{k}": v for k, v in gs.attributes.items()},
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            # Large sets (e.g. 224 px) compress ~10x; small ones are not worth the zlib time (rendering 10k
            # 32-px images is faster than compressing them).
            (np.savez_compressed if gs.images.nbytes > 100e6 else np.savez)(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
