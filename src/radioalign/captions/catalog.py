"""The ``catalog`` backend: a deterministic, offline captioner that reads morphology off the pixels.

It plays the part of a source catalogue written out as prose: what a radio
astronomer's source finder would report (components, peaks, extent, axis),
phrased in the vocabulary of the curated LLM captions but never naming a class.

Measurement (``measure``)
-------------------------
1. Background and noise: ``b = median(image)`` and the robust noise
   ``sigma = 1.4826 * MAD(image)``. Emission is every pixel above ``b + 3 sigma``.
   MiraBest cutouts are already clipped (the background is exactly 0, so
   ``sigma = 0``): then every pixel above the background is emission.
2. Components: 8-connected regions of emission (``scipy.ndimage.label``);
   regions smaller than ``min_pixels`` are noise and dropped.
3. The host: MiraBest centres each cutout on the optical host galaxy, so the
   image centre is the "central galaxy" against which sides, ends and the
   Fanaroff-Riley ratio are measured.
4. Unassociated sources: small components (``< compact_pixels``, < 10 % of the
   flux) lying off the source axis and away from the centre.
5. Axis: the principal axis of the flux-weighted second moments of the
   associated emission about the image centre; elongation is the square root
   of the eigenvalue ratio of the moments about the flux centroid.
6. Flux centroids: local maxima of the lightly smoothed emission (``sigma=1`` px)
   above ``peak_fraction`` of the brightest, at least 4 px apart.
7. Where the brightest emission lies (the FR criterion). On each side of the
   centre along the axis, ``e`` is the extent of the emission and ``d`` the
   distance of that side's brightest point. The ratio ``R = sum(d) / sum(e)``
   (one-sided sources: ``d / e`` of the brighter side) is Fanaroff & Riley's
   (1974) ratio, whose class boundary is 0.5. Words: ``R >= 0.65`` peaks at the
   outer ends (edge-brightened hotspots), ``0.45-0.65`` toward the ends,
   ``0.25-0.45`` midway, ``< 0.25`` near the centre, fading outward (edge-darkened).

Words (``describe``)
--------------------
``curated``: the full description, at most 50 words: flux centroids in
brightness order and where they lie; size, elongation and orientation; whether
emission extends on both sides of the centre (and how symmetrically); where the
brightest emission lies along the source (outer ends: edge-brightened; centre:
edge-darkened); a bright core or little central emission; separate regions;
diffuse emission or bright knots (share of emission above half the peak);
unassociated compact sources. When over 50 words, the least important
sentences are dropped whole.
``control``: a short, plain description from the same measurements (how many
blobs, shape, size, where), as a lay caption would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

VERSION = "1"  # bump when the words or the measurements change: it is stored with each caption
MAX_WORDS = 50


@dataclass(frozen=True)
class Component:
    """One flux centroid (a local maximum of the smoothed emission)."""

    row: float
    col: float
    brightness: float  # smoothed value relative to the brightest centroid (1.0 = brightest)


@dataclass(frozen=True)
class Morphology:
    """What ``measure`` reads off one image (pixels; rows grow downward, as displayed)."""

    shape: tuple[int, int]
    detected: bool
    n_components: int = 0  # associated emission regions
    centroids: tuple[Component, ...] = ()
    extent: float = 0.0  # length along the axis, px
    width: float = 0.0  # 90th percentile of |distance from the axis|, px
    angle: float = 0.0  # axis angle in degrees, 0 = horizontal, in (-90, 90], counter-clockwise as displayed
    elongation: float = 1.0  # sqrt of the moment eigenvalue ratio
    side_extent: tuple[float, float] = (0.0, 0.0)  # extent on either side of the centre along the axis
    side_peak: tuple[float, float] = (0.0, 0.0)  # distance of each side's brightest point from the centre
    side_peak_value: tuple[float, float] = (0.0, 0.0)  # that point's brightness relative to the maximum
    fr_ratio: float = 0.0  # sum(side_peak) / sum(side_extent); one-sided: d / e of the brighter side
    core: float = 0.0  # brightest smoothed emission within 4 px of the centre, relative to the maximum
    gap: bool = False  # associated emission split into separate regions along the axis
    bright_fraction: float = 0.0  # share of the emission pixels above half the peak (concentrated vs diffuse)
    unassociated: tuple[tuple[float, float], ...] = ()  # (row, col) of unassociated compact sources


def noise_threshold(image: np.ndarray, nsigma: float = 3.0) -> float:
    """``median + nsigma * 1.4826 * MAD``; just above the median when the MAD is 0 (clipped background)."""
    x = np.asarray(image, dtype=np.float64)
    med = float(np.median(x))
    sigma = 1.4826 * float(np.median(np.abs(x - med)))
    return med + (nsigma * sigma if sigma > 0 else 0.5)


def measure(
    image: np.ndarray,
    *,
    nsigma: float = 3.0,
    min_pixels: int = 8,
    compact_pixels: int = 40,
    peak_fraction: float = 0.3,
) -> Morphology:
    """Measure the morphology of one 2-D image (see the module docstring for definitions)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected one 2-D image, got shape {img.shape}")
    h, w = img.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    thr = noise_threshold(img, nsigma)
    labels, n = ndi.label(img > thr, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    if not keep.any():
        return Morphology(shape=(h, w), detected=False)
    flux = np.where(keep[labels], img - thr, 0.0)  # emission above the threshold
    ids = np.flatnonzero(keep)
    comp_pos = np.array(ndi.center_of_mass(flux, labels, ids)).reshape(-1, 2)
    unassoc = _unassociated(flux, labels, ids, sizes, comp_pos, centre, compact_pixels)
    assoc_ids = [c for c in ids if c not in unassoc]
    mask = np.isin(labels, assoc_ids)
    flux = np.where(mask, flux, 0.0)
    axis = _principal_axis(flux, mask, centre)

    rows, cols = np.nonzero(mask)
    d = np.stack([rows - centre[0], cols - centre[1]], axis=1)
    along = d @ axis
    smooth = ndi.gaussian_filter(flux, 1.0)
    s = smooth[rows, cols]
    smax = s.max()
    ext, pk, pv, ratio = _sides(along, s, smax)
    elong, angle = _shape(flux[rows, cols], d, axis)
    near = np.hypot(rows - centre[0], cols - centre[1]) <= 4
    big_assoc = [c for c in assoc_ids if sizes[c] >= min_pixels * 2]
    return Morphology(
        shape=(h, w),
        detected=True,
        bright_fraction=float((s > 0.5 * smax).mean()),
        n_components=len(assoc_ids),
        centroids=_centroids(smooth, mask, smax, peak_fraction),
        extent=float(sum(ext)),
        width=float(np.percentile(np.abs(d @ np.array([-axis[1], axis[0]])), 90)),
        angle=angle,
        elongation=elong,
        side_extent=(ext[0], ext[1]),
        side_peak=(pk[0], pk[1]),
        side_peak_value=(pv[0], pv[1]),
        fr_ratio=float(ratio),
        core=float(s[near].max() / smax) if near.any() else 0.0,
        gap=_gap(flux, labels, big_assoc, centre, axis, sum(ext)),
        unassociated=tuple((float(comp_pos[k][0]), float(comp_pos[k][1])) for k, c in enumerate(ids) if c in unassoc),
    )


def _unassociated(flux, labels, ids, sizes, comp_pos, centre, compact_pixels: int) -> list:
    """Components that are small, faint, and off the source's axis and centre: other sources."""
    total = flux.sum()
    comp_flux = ndi.sum(flux, labels, ids)
    # Axis of the big components first: compact strays must not tilt it.
    big = (sizes[ids] >= compact_pixels) | (comp_flux >= 0.1 * total)
    axis = _principal_axis(flux, np.isin(labels, ids[big]), centre)
    unassoc = []
    for k, cid in enumerate(ids):
        if big[k]:
            continue
        off = comp_pos[k] - centre
        across = abs(off @ np.array([-axis[1], axis[0]]))
        if across > 12 and np.hypot(*off) > 20:
            unassoc.append(cid)
    return unassoc


def _sides(along: np.ndarray, s: np.ndarray, smax: float):
    """Per side of the centre along the axis: extent, distance of the brightest point and its
    brightness; and the FR ratio (peak distance over extent, both sides when two-sided)."""
    ext, pk, pv = [], [], []
    for side in (along < 0, along >= 0):
        if side.sum() < 3:
            ext.append(0.0), pk.append(0.0), pv.append(0.0)
            continue
        j = np.argmax(s[side])
        ext.append(float(np.abs(along[side]).max()))
        pk.append(float(abs(along[side][j])))
        pv.append(float(s[side][j] / smax))
    if min(pv) >= 0.2 and min(ext) >= 5:
        ratio = sum(pk) / max(sum(ext), 1.0)
    else:
        b = int(np.argmax(pv))
        ratio = pk[b] / max(ext[b], 1.0)
    return ext, pk, pv, ratio


def _shape(wts: np.ndarray, d: np.ndarray, axis: np.ndarray) -> tuple[float, float]:
    """Elongation about the flux centroid (shape, not position) and the axis angle in degrees."""
    mu = (wts[:, None] * d).sum(0) / wts.sum()
    cov = np.cov((d - mu).T, aweights=wts, bias=True)
    ev = np.linalg.eigvalsh(cov)
    elong = float(np.sqrt(ev[1] / max(ev[0], 1e-6)))
    angle = float(np.degrees(np.arctan2(-axis[0], axis[1])))  # rows grow downward
    return elong, (angle + 90) % 180 - 90


def _centroids(smooth: np.ndarray, mask: np.ndarray, smax: float, peak_fraction: float) -> tuple:
    """Bright peaks of the smoothed emission, brightest first (ties by position)."""
    peaks = peak_local_max(smooth, min_distance=4, threshold_abs=peak_fraction * smax, exclude_border=False, labels=mask.astype(int))
    order = np.lexsort((peaks[:, 1], peaks[:, 0], -smooth[peaks[:, 0], peaks[:, 1]])) if len(peaks) else []
    return tuple(Component(float(peaks[i, 0]), float(peaks[i, 1]), float(smooth[peaks[i, 0], peaks[i, 1]] / smax)) for i in order)


def _gap(flux, labels, big_assoc: list, centre, axis, extent: float) -> bool:
    """Two or more associated regions that sit far apart along the axis."""
    if len(big_assoc) < 2:
        return False
    pos = np.array(ndi.center_of_mass(flux, labels, big_assoc)).reshape(-1, 2) - centre
    a = pos @ axis
    return bool(a.max() - a.min() > 0.3 * max(extent, 1.0))


def _principal_axis(flux: np.ndarray, mask: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Unit vector (row, col) of the major axis of the flux-weighted moments about ``centre``."""
    rows, cols = np.nonzero(mask)
    if rows.size < 2:
        return np.array([0.0, 1.0])
    d = np.stack([rows - centre[0], cols - centre[1]], axis=1)
    wts = flux[rows, cols] + 1e-12
    m = (d * wts[:, None]).T @ d / wts.sum()
    vals, vecs = np.linalg.eigh(m)
    v = vecs[:, 1]
    # A fixed sign so that "side 0" / "side 1" are reproducible.
    if v[1] < 0 or (v[1] == 0 and v[0] < 0):
        v = -v
    return v


# ---------------------------------------------------------------- words


def position_word(row: float, col: float, shape: tuple[int, int], centre_radius: float = 0.1) -> str:
    """``centre``, ``left``, ``upper right``, ... for a pixel position (rows grow downward)."""
    h, w = shape
    dy, dx = row - (h - 1) / 2, col - (w - 1) / 2
    if np.hypot(dy, dx) <= centre_radius * min(h, w):
        return "center"
    ang = np.degrees(np.arctan2(-dy, dx)) % 360  # 0 = right, counter-clockwise as displayed
    names = ["right", "upper right", "top", "upper left", "left", "lower left", "bottom", "lower right"]
    return names[int(((ang + 22.5) % 360) // 45)]


def _place(word: str) -> str:
    return "at the center" if word == "center" else ("at the " if word in ("top", "bottom") else "to the ") + word


def orientation_word(angle: float) -> str:
    a = abs(angle)
    if a < 22.5:
        return "horizontal"
    if a > 67.5:
        return "vertical"
    return "diagonal, lower left to upper right" if angle > 0 else "diagonal, upper left to lower right"


_COUNT = {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five"}


def describe(m: Morphology, prompt: str = "curated") -> str:
    """Words for a ``Morphology``: ``curated`` (full) or ``control`` (plain); at most 50 words."""
    if prompt not in ("curated", "control"):
        raise ValueError(f"prompt must be 'curated' or 'control', got {prompt!r}")
    if not m.detected:
        return "No significant emission is detected; the image shows only background noise."
    return _limit(_control(m) if prompt == "control" else _curated(m))


def _size_word(m: Morphology) -> str:
    frac = m.extent / max(m.shape)
    if frac < 0.12:
        return "compact"
    if frac < 0.35:
        return "moderately extended"
    return "extended"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _curated(m: Morphology) -> list[tuple[int, str]]:
    """(priority, sentence) pairs; ``_limit`` drops the highest numbers first when over 50 words."""
    out = []
    cents = m.centroids
    first = position_word(cents[0].row, cents[0].col, m.shape) if cents else "center"
    if len(cents) <= 1:
        out.append((1, f"A single bright flux centroid lies {_place(first)}."))
    else:
        others = []
        for c in cents[1:3]:
            w = position_word(c.row, c.col, m.shape)
            if w not in others:
                others.append(w)
        count = _COUNT.get(len(cents), "Several")
        where = _and([_place(w) for w in others]).replace(" and to the ", " and ")
        fainter = "a fainter one" if len(cents) == 2 else "fainter ones"
        out.append((1, f"{count} flux centroids: the brightest {_place(first)}, {fainter} {where}."))
    size = _size_word(m)
    if size == "compact":
        out.append((1, "The emission is compact and unresolved."))
    else:
        if m.elongation >= 1.7:
            shape = "strongly elongated" if m.elongation >= 3 else "elongated"
            out.append((1, f"{size.capitalize()}, {shape} emission, {orientation_word(m.angle)}."))
        else:
            out.append((1, f"{size.capitalize()}, roughly round emission."))
        two_sided = min(m.side_peak_value) >= 0.2 and min(m.side_extent) >= 5
        if not two_sided:
            out.append((2, "Emission extends to one side only."))
        elif min(m.side_extent) >= 0.75 * max(m.side_extent):
            out.append((2, "Emission extends symmetrically on both sides of the center."))
        else:
            out.append((2, "Emission extends on both sides of the center, farther on one side."))
        r = m.fr_ratio
        if r >= 0.65:
            out.append((1, "The brightest peaks sit at the outer ends: edge-brightened hotspots."))
        elif r >= 0.45:
            out.append((1, "The brightest peaks lie toward the outer ends, fairly edge-brightened."))
        elif r >= 0.25:
            out.append((1, "The brightest emission lies midway between center and ends."))
        else:
            out.append((1, "The brightest emission lies near the center and fades outward: edge-darkened jets."))
        if m.core >= 0.5:
            out.append((2, "A bright central core."))
        elif m.core < 0.2:
            out.append((2, "Little emission at the center."))
        if m.gap:
            out.append((3, "Separate regions with gaps between them."))
        if m.bright_fraction < 0.08:
            out.append((3, "Mostly faint, diffuse emission."))
        elif m.bright_fraction > 0.15:
            out.append((3, "The emission is concentrated in bright knots."))
    if m.unassociated:
        w = position_word(*m.unassociated[0], m.shape)
        k = len(m.unassociated)
        what = "An unassociated compact source" if k == 1 else f"{_COUNT.get(k, 'Several')} unassociated compact sources"
        out.append((2, f"{what} {_place(w)}."))
    else:
        out.append((4, "No unassociated sources."))
    return out


def _control(m: Morphology) -> list[tuple[int, str]]:
    n = m.n_components
    blobs = "a single bright blob" if n <= 1 else f"{_COUNT.get(n, 'several').lower()} bright blobs"
    size = _size_word(m)
    shape = "small" if size == "compact" else ("long, thin" if m.elongation >= 3 else "stretched" if m.elongation >= 1.7 else "rounded")
    where = position_word(m.centroids[0].row, m.centroids[0].col, m.shape) if m.centroids else "center"
    text = f"A dark image showing {blobs}, {shape}, brightest {_place(where)}"
    if size != "compact" and m.elongation >= 1.7:
        text += f", running {orientation_word(m.angle).split(',')[0]}"
    return [(1, text + ".")]


def _limit(sentences: list[tuple[int, str]]) -> str:
    """Join sentences, dropping whole low-priority ones (highest number last added first) to stay within 50 words."""
    keep = list(sentences)
    while sum(len(t.split()) for _, t in keep) > MAX_WORDS and len(keep) > 1:
        worst = max(range(len(keep)), key=lambda i: (keep[i][0], i))
        keep.pop(worst)
    text = " ".join(t for _, t in keep)
    words = text.split()
    return text if len(words) <= MAX_WORDS else " ".join(words[:MAX_WORDS]).rstrip(",;:.") + "."


def catalog_caption(image: np.ndarray, prompt: str = "curated", **measure_options) -> str:
    """The ``catalog`` caption of one image: ``describe(measure(image), prompt)``."""
    return describe(measure(image, **measure_options), prompt)
