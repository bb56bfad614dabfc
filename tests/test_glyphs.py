"""Tests for ctta.glyphs (procedural glyph dataset) and ctta._cache. Fast: a few seconds on 2 CPU cores."""

from __future__ import annotations

import functools
import string
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
import torch.nn.functional as F

from ctta.core import files as _cache
from ctta.data import glyphs as G

ALL_USED_DOMAINS = G.BENCHMARK_DOMAINS + G.PRETRAIN_DOMAINS


def _faces(domains) -> list[str]:
    return sorted({f for d in domains for f in G.DOMAINS[d].faces})


# --------------------------------------------------------------------------------------------------------
# Character sets and domains
# --------------------------------------------------------------------------------------------------------


def test_char_sets_sizes_order_and_disjointness():
    assert len(G.BENCHMARK_CHARS) == 100 and len(set(G.BENCHMARK_CHARS)) == 100
    assert len(G.PRETRAIN_CHARS) == 87 and len(set(G.PRETRAIN_CHARS)) == 87
    assert not set(G.BENCHMARK_CHARS) & set(G.PRETRAIN_CHARS)
    assert "".join(G.BENCHMARK_CHARS[:10]) == string.digits  # documented fixed order starts with digits
    scripts = [G.char_script(c) for c in G.BENCHMARK_CHARS]
    assert (scripts.count("digit"), scripts.count("latin"), scripts.count("greek")) == (10, 60, 30)
    pre_scripts = [G.char_script(c) for c in G.PRETRAIN_CHARS]
    assert (pre_scripts.count("cyrillic"), pre_scripts.count("symbol")) == (21, 66)


def test_char_names():
    assert G.char_name("A") == "latin capital letter a"
    assert G.char_name("α") == "greek small letter alpha"
    assert G.char_name("7") == "digit seven"
    assert G.char_name("Ж") == "cyrillic capital letter zhe"
    assert (G.char_case("A"), G.char_case("α"), G.char_case("7")) == ("upper", "lower", "none")
    assert len({G.char_name(c) for c in G.BENCHMARK_CHARS + G.PRETRAIN_CHARS}) == 187  # names are unique


def test_domains_are_disjoint_between_benchmark_and_pretraining():
    bench = [G.DOMAINS[d] for d in G.BENCHMARK_DOMAINS + G.EXTRA_DOMAINS]
    pre = [G.DOMAINS[d] for d in G.PRETRAIN_DOMAINS]
    assert not set(G.BENCHMARK_DOMAINS + G.EXTRA_DOMAINS) & set(G.PRETRAIN_DOMAINS)

    def parts(doms):
        faces = {G.FACES[f].file for d in doms for f in d.faces}
        colours = {c for d in doms for c in d.fg + d.bg}
        return faces, colours, {G.COLOURS[c] for c in colours}, {t for d in doms for t in d.textures}

    for b, p in zip(parts(bench), parts(pre)):
        assert not b & p, b & p  # no face file, colour name, RGB value or texture in common
    # The STIX family never appears in pretraining: "stix" is an unseen font family for benchmarks.
    assert not {G.FACES[f].family for d in pre for f in d.faces} & {"stix", "computer modern"}


def test_domain_definitions_are_valid_with_guaranteed_contrast():
    for name, dom in G.DOMAINS.items():
        assert all(f in G.FACES for f in dom.faces), name
        assert all(t in G.TEXTURES for t in dom.textures), name
        triples = dom.colour_triples()
        assert triples, name
        for fg, bg, bg2 in triples:
            for b in (bg, bg2):
                assert abs(G.luma(fg) - G.luma(b)) >= dom.min_contrast
            assert (G.luma(bg) - G.luma(fg)) * (
                G.luma(bg2) - G.luma(fg)
            ) > 0  # same side: mixes keep contrast
    assert set(G.TEXTURE_WORDS) == set(G.TEXTURES)


def test_every_char_has_a_nonempty_glyph_in_every_face_it_is_used_in():
    for f in _faces(ALL_USED_DOMAINS):
        for ch in G.BENCHMARK_CHARS + G.PRETRAIN_CHARS:
            ink = G._template(G.FACES[f], ch, 64).float().sum() / 255
            assert ink > 20, (f, ch)  # > 20 fully covered pixels of a 64x64 canvas
    for d in G.EXTRA_DOMAINS:  # extra domains: exactly the characters they claim to cover
        for f in G.DOMAINS[d].faces:
            for ch in G.domain_chars(d):
                assert G._template(G.FACES[f], ch, 64).float().sum() / 255 > 20, (d, f, ch)
    assert G.domain_chars("stix-italic") == G.BENCHMARK_CHARS
    cm = G.domain_chars("cm")  # Computer Modern: only ASCII letters/digits and Greek capitals
    assert set(cm) == {c for c in G.BENCHMARK_CHARS if (c.isascii() and c.isalnum()) or c in "ΓΔΛΞΠΣΦΨΩ"}
    with pytest.raises(ValueError, match="no glyph"):
        G.render_glyphs(["α"], ["cm"], 1)


# --------------------------------------------------------------------------------------------------------
# No near-duplicate classes
# --------------------------------------------------------------------------------------------------------
# Metric: fit each glyph's ink box into a 64x64 square (aspect kept: this removes size, so c/C-type pairs
# that differ only by size look alike), take its outline (mask minus erosion, insensitive to stroke weight),
# and call two glyphs near-duplicates if 95% of each outline lies within TOL * 64 px (2.6 px, i.e. ~1 px
# at 32x32) of the other's, in at least one face. Calibrated on the pairs deliberately excluded (see below):
# they are all caught, while every kept pair is farther apart (closest: I/i, 0/8, A/Λ at ~0.046-0.054).
_BOX, _CANVAS, _TOL = 64, 80, 0.04
LATIN_GREEK_DIGITS = tuple(
    string.digits + string.ascii_letters + "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩαβγδεζηθικλμνξοπρστυφχψως"
)


@functools.cache
def _outline(face: str, ch: str) -> np.ndarray:
    """Outline (mask minus its erosion) of ``ch`` in ``face``, ink box fitted into _BOX px, on a _CANVAS grid."""
    t = G._template(G.FACES[face], ch, 128).numpy()
    rows, cols = np.nonzero(t > 12)
    t = torch.from_numpy(t[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] / np.float32(255))
    h, w = t.shape
    nh, nw = max(1, round(h * _BOX / max(h, w))), max(1, round(w * _BOX / max(h, w)))
    t = F.interpolate(t[None, None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[
        0, 0
    ]
    m = np.zeros((_CANVAS + 2, _CANVAS + 2), bool)  # 1-px border so the 3x3 erosion needs no special case
    top, left = (_CANVAS - nh) // 2 + 1, (_CANVAS - nw) // 2 + 1
    m[top : top + nh, left : left + nw] = (t > 0.5).numpy()
    eroded = np.logical_and.reduce(
        [m[1 + dy : _CANVAS + 1 + dy, 1 + dx : _CANVAS + 1 + dx] for dy, dx in _SQUARE]
    )
    return m[1:-1, 1:-1] & ~eroded


_SQUARE = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
# Pixel offsets within _TOL * _BOX = 2.56 px: a 5x5 square without its corners.
_DISK = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if dy * dy + dx * dx <= (_TOL * _BOX) ** 2]


def _near(outlines: np.ndarray) -> np.ndarray:
    """[..., C, C] outlines -> bool mask of the pixels within the tolerance of an outline pixel."""
    pad = [(0, 0)] * (outlines.ndim - 2) + [(2, 2), (2, 2)]
    p = np.pad(outlines, pad)
    return np.logical_or.reduce(
        [p[..., 2 + dy : 2 + dy + _CANVAS, 2 + dx : 2 + dx + _CANVAS] for dy, dx in _DISK]
    )


def _far(outlines: np.ndarray, near: np.ndarray) -> np.ndarray:
    """far[i, j] = fraction of outline i's pixels that are not near outline j (sparse: outlines are thin)."""
    flat = outlines.reshape(len(outlines), -1)
    rows, cols = np.nonzero(flat)
    counts = np.bincount(rows, minlength=len(flat))
    e = scipy.sparse.csr_matrix(
        (np.ones(len(cols), np.float32), cols, np.r_[0, np.cumsum(counts)]), flat.shape
    )
    return (e @ (~near).reshape(len(near), -1).T.astype(np.float32)) / counts[:, None]


def _near_duplicates(chars_a, chars_b, faces, rotations=(0,)) -> set[tuple[str, str]]:
    """Pairs (a, b), a != b, such that a is a near-duplicate of b rotated by a multiple of 90 degrees."""
    found = set()
    for f in faces:
        ea = np.stack([_outline(f, c) for c in chars_a])
        eb0 = np.stack([_outline(f, c) for c in chars_b])
        near_a, near_b0 = _near(ea), _near(eb0)
        for rot in rotations:
            eb, near_b = (np.rot90(x, rot // 90, (1, 2)) for x in (eb0, near_b0))  # the disk is symmetric
            dup = np.maximum(_far(ea, near_b), _far(eb, near_a).T) < 0.05
            found |= {(chars_a[i], chars_b[j]) for i, j in zip(*np.nonzero(dup)) if chars_a[i] != chars_b[j]}
    return found


def test_near_duplicate_metric_catches_the_excluded_confusables():
    known = [("A", "Α"), ("o", "ο"), ("l", "I"), ("c", "C"), ("s", "S"), ("w", "W"), ("x", "X"), ("z", "Z")]
    known += [("v", "V"), ("p", "ρ"), ("0", "θ"), ("J", "j"), ("X", "χ"), ("a", "а"), ("Ф", "Φ")]
    a, b = zip(*known)
    found = _near_duplicates(list(a), list(b), _faces(ALL_USED_DOMAINS))
    assert set(known) <= found, set(known) - found


def test_no_near_duplicate_classes():
    faces = _faces(ALL_USED_DOMAINS)  # benchmark chars are also rendered in pretraining faces (CLIP)
    bench, pre = list(G.BENCHMARK_CHARS), list(G.PRETRAIN_CHARS)
    assert not _near_duplicates(bench, bench, faces)
    assert not _near_duplicates(pre, pre, faces)
    # Pretraining glyphs look like no digit / Latin / Greek letter, even upside down.
    pool = sorted(set(bench) | set(LATIN_GREEK_DIGITS))
    assert not _near_duplicates(pre, pool, faces, rotations=(0, 180))


# --------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 64, 224])
def test_shapes_and_dtypes(size):
    n = 2 if size < 224 else 1
    chars, domains = G.BENCHMARK_CHARS[:3], ("sans", "pattern") if size < 224 else ("night",)
    gs = G.render_glyphs(chars, domains, n, size=size)
    total = len(chars) * len(domains) * n
    assert len(gs) == total
    assert gs.images.shape == (total, size, size, 3) and gs.images.dtype == np.uint8
    assert gs.labels.dtype == np.int64 and gs.domains.dtype == np.int64
    assert gs.chars == chars and gs.domain_names == domains
    assert set(gs.labels) == set(range(len(chars))) and set(gs.domains) == set(range(len(domains)))
    for k in ("font", "face", "weight", "slant", "fg", "bg", "bg2", "texture", "script", "case"):
        assert gs.attributes[k].shape == (total,) and gs.attributes[k].dtype.kind == "U", k
    for k in ("rotation", "scale", "dx", "dy"):
        assert gs.attributes[k].shape == (total,) and gs.attributes[k].dtype == np.float32, k
    assert (gs.images.reshape(total, -1).std(1) > 10).all()  # a visible glyph, not a flat image


def test_deterministic_seed_sensitive_and_independent_of_the_rest_of_the_call():
    kw = dict(size=24)
    a = G.render_glyphs("AB", ["sans", "sans-oblique"], 3, seed=5, **kw)
    b = G.render_glyphs("AB", ["sans", "sans-oblique"], 3, seed=5, **kw)
    assert np.array_equal(a.images, b.images)
    assert all(np.array_equal(a.attributes[k], b.attributes[k]) for k in a.attributes)
    c = G.render_glyphs("AB", ["sans", "sans-oblique"], 3, seed=6, **kw)
    assert (a.images != c.images).reshape(len(a), -1).any(1).all()  # every sample changes with the seed
    # A sample depends only on (seed, domain, char, index): not on the other chars/domains, nor on n.
    d = G.render_glyphs("BC", ["serif", "sans-oblique"], 5, seed=5, **kw)
    sel_a = (a.labels == 1) & (a.domains == 1)
    sel_d = (d.labels == 0) & (d.domains == 1)
    assert np.array_equal(a.images[sel_a], d.images[sel_d][:3])


def test_attributes_describe_the_image(monkeypatch):
    """Translation and rotation attributes match the rendered glyph (centroid, principal axis of 'I')."""
    monkeypatch.setitem(G.DOMAINS, "test-bw", G.Domain(("sans",), ("black",), ("white",), ("plain",)))
    jit = G.Jitter(rotation=40.0, scale=(1.0, 1.0), translate=0.15)
    gs = G.render_glyphs(["I"], ["test-bw"], 40, size=64, jitter=jit)
    ink = 255.0 - gs.images.astype(np.float64).mean(-1)  # black on white: ink = coverage
    yy, xx = np.mgrid[:64, :64] + 0.5
    m = ink.sum((1, 2))
    cx, cy = (ink * xx).sum((1, 2)) / m, (ink * yy).sum((1, 2)) / m
    assert np.abs(cx - 32 - gs.attributes["dx"] * 64).max() < 1.5
    assert np.abs(cy - 32 - gs.attributes["dy"] * 64).max() < 1.5
    # Orientation of the bar: angle of the principal axis from vertical, counter-clockwise on screen.
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    mxx, myy, mxy = ((ink * dx * dx).sum((1, 2)), (ink * dy * dy).sum((1, 2)), (ink * dx * dy).sum((1, 2)))
    angle = np.degrees(0.5 * np.arctan2(2 * mxy, myy - mxx))  # 0 for a vertical bar
    assert np.abs(angle - gs.attributes["rotation"]).max() < 3


def test_learnable_nearest_class_mean_on_raw_pixels():
    """20 classes, 50 training / 20 test images each (different seeds), "sans" domain, 32x32: a nearest-
    class-mean classifier on normalised grey pixels reaches ~47% (chance: 5%)."""
    chars = G.BENCHMARK_CHARS[::5]
    train = G.render_glyphs(chars, ["sans"], 50, seed=0)
    test = G.render_glyphs(chars, ["sans"], 20, seed=1)

    def features(gs):
        x = gs.images.astype(np.float32).mean(-1).reshape(len(gs), -1)
        x -= x.mean(1, keepdims=True)
        return x / (x.std(1, keepdims=True) + 1e-6)

    xtr, xte = features(train), features(test)
    means = np.stack([xtr[train.labels == k].mean(0) for k in range(len(chars))])
    pred = np.argmin(((xte[:, None] - means[None]) ** 2).sum(-1), 1)
    acc = (pred == test.labels).mean()
    assert acc > 0.3, acc


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        G.render_glyphs("AA", ["sans"], 1)  # duplicate class
    with pytest.raises(ValueError, match="unknown"):
        G.render_glyphs("A", ["nope"], 1)
    with pytest.raises(ValueError):
        G.render_glyphs("A", ["sans"], 0)
    with pytest.raises(ValueError):
        G.Jitter(scale=(1.2, 0.8))


# --------------------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------------------


def test_captions_contain_name_and_attributes():
    gs = G.render_glyphs(["Q", "α"], ["serif", "pattern", "serif-italic"], 4)
    for i in range(len(gs)):
        cap = gs.caption(i)
        a = {k: str(v[i]) for k, v in gs.attributes.items()}
        assert cap.startswith(f"the {G.char_name(gs.chars[gs.labels[i]])} in ")
        for word in (a["font"], a["weight"], a["slant"], a["fg"], a["bg"], G.TEXTURE_WORDS[a["texture"]]):
            assert word in cap, (word, cap)
        if a["texture"] != "plain":
            assert a["bg2"] in cap
    assert "the greek small letter alpha in" in gs.caption(int(np.argmax(gs.labels == 1)))


def test_random_captions_are_compositional():
    gs = G.render_glyphs(["Q"], ["pattern"], 1)
    a = {k: str(v[0]) for k, v in gs.attributes.items()}
    rng = np.random.default_rng(0)
    caps = [gs.caption(0, rng) for _ in range(300)]
    assert all("latin capital letter q" in c for c in caps)
    assert len(set(caps)) > 50
    for word in (a["font"], a["weight"], a["fg"], a["bg"], G.TEXTURE_WORDS[a["texture"]]):
        share = np.mean([word in c for c in caps])
        assert 0.1 < share < 0.9, (word, share)  # each attribute is sometimes said, sometimes omitted
    assert gs.caption(0, np.random.default_rng(1)) == gs.caption(0, np.random.default_rng(1))


# --------------------------------------------------------------------------------------------------------
# Disk cache
# --------------------------------------------------------------------------------------------------------


def _assert_same(a: G.GlyphSet, b: G.GlyphSet) -> None:
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.domains, b.domains) and a.chars == b.chars and a.domain_names == b.domain_names
    assert a.attributes.keys() == b.attributes.keys()
    assert all(np.array_equal(a.attributes[k], b.attributes[k]) for k in a.attributes)


def test_cache_roundtrip_and_corruption(tmp_path, monkeypatch):
    args = (("A", "ж"), ("sans", "mono-oblique"), 3)
    first = G.load_glyphs(*args, size=16, cache_dir=tmp_path)
    files = list(tmp_path.glob("glyphs-16px-*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    _assert_same(first, G.render_glyphs(*args, size=16))

    def no_render(*a, **k):
        raise AssertionError("should have been loaded from the cache")

    with monkeypatch.context() as m:
        m.setattr(G, "render_glyphs", no_render)
        _assert_same(G.load_glyphs(*args, size=16, cache_dir=tmp_path), first)
    assert G.load_glyphs(*args, size=16, seed=1, cache_dir=tmp_path) is not None  # other args: other file
    assert len(list(tmp_path.glob("*.npz"))) == 2

    data = files[0].read_bytes()
    for broken in (data[: len(data) // 2], b"not a zip file"):  # truncated / garbage file
        files[0].write_bytes(broken)
        _assert_same(G.load_glyphs(*args, size=16, cache_dir=tmp_path), first)
        _assert_same(G.load_glyphs(*args, size=16, cache_dir=tmp_path), first)  # rewritten, loads again


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CTTA_CACHE", str(tmp_path / "c"))
    assert _cache.cache_dir() == tmp_path / "c"
    G.load_glyphs("A", ["sans"], 1, size=16)
    assert len(list((tmp_path / "c" / "glyphs").glob("*.npz"))) == 1
    monkeypatch.delenv("CTTA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert _cache.cache_dir() == tmp_path / "x" / "ctta"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _cache.cache_dir() == Path.home() / ".cache" / "ctta"
