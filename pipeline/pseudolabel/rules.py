"""Posteriors and the pseudo-label selection rules the methods are built from.

Every rule takes a posterior matrix `probs` [N, C'] over the classes pseudo-labels may take (all
classes, or TRZSL's unseen ones) and returns `Candidates` in those coordinates: rows of `probs`,
columns of `probs`. The methods (`pipeline.methods`) decide which rule, which posterior and when.

Balanced top-K and CPL's pools are one vectorised stable assignment (`assign_to_pools`), and no rule
holds an N x C temporary beyond the mask it returns, so they run on pools of a million images.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.candidates import LOGIT_SCALE, Candidates

CHUNK_ELEMENTS = 1 << 21   # entries of an N x C matrix a chunked step copies at once (8-16 MB)
PREFERENCE_WIDTH = 16      # classes of a row's ranking found at once; the rows that need more read on


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def text_posterior(image_features: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    """CLIP's zero-shot posterior, softmax(100 · f tᵀ)."""
    return softmax(LOGIT_SCALE * image_features @ class_weights.T)


def fuse(p_text: np.ndarray, p_aux: np.ndarray, weight: float) -> np.ndarray:
    """AiR's fused posterior `(p_text + λ p_aux) / (1 + λ)`: still a distribution per row."""
    return (p_text + weight * p_aux) / (1.0 + weight)


def _single(probs: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> Candidates:
    return Candidates.single(rows, labels, probs.shape[1], probs[rows, labels])


def select_all(probs: np.ndarray) -> Candidates:
    """Every image with its argmax class (what zero-shot CLIP would say)."""
    return _single(probs, np.arange(len(probs)), probs.argmax(axis=1))


def select_upl(probs: np.ndarray, k: int) -> Candidates:
    """UPL: argmax class per image, then per predicted class the k most confident; no fallback."""
    labels = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), labels]
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = np.lexsort((members, -confidence[members]))  # confidence desc, index asc on ties
        keep.append(members[order[:k]])
    rows = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    return _single(probs, rows, labels[rows])


def select_balanced(probs: np.ndarray, k: int) -> Candidates:
    """Balanced top-K with fallback, as `select_balanced_by_sorting` defines it, without sorting the
    N·C pairs: image and class rank a pair by the same posterior, so the walk's result is the unique
    stable assignment with k places per class, which the pools of `assign_to_pools` find."""
    assigned = assign_to_pools(probs, None, np.full(probs.shape[1], k))
    rows = np.flatnonzero(assigned >= 0)
    return _single(probs, rows, assigned[rows])


def select_balanced_by_sorting(probs: np.ndarray, k: int) -> Candidates:
    """The definition of balanced top-K with fallback: walk all (image, class) pairs by posterior,
    descending; take a pair when the image is still free and the class holds fewer than k. One label
    per image, deterministic (ties broken by image then class index). It sorts all N·C pairs (20
    bytes a pair at float32) and walks them in Python, so the methods call `select_balanced`; the
    tests and benchmarks/selection_scaling.py compare that against this."""
    n, c = probs.shape
    flat = probs.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))
    taken = np.full(n, -1)
    room = np.full(c, k)
    budget = min(n, c * k)
    assigned = 0
    for pair in order:
        if assigned == budget:
            break
        image, label = divmod(int(pair), c)
        if taken[image] < 0 and room[label] > 0:
            taken[image] = label
            room[label] -= 1
            assigned += 1
    rows = np.flatnonzero(taken >= 0)
    return _single(probs, rows, taken[rows])


def grip_k(round_index: int, n_unlabeled: int, n_classes: int, rounds: int, inner_floor: bool = False) -> int:
    """GRIP's schedule: round t of R takes K_t = floor(t · (|U| / R) / C), capped at floor(|U| / C).
    `inner_floor` is the form GRIP's and CPL's training_strategies.py run, floor(t · floor(|U| / R) / C):
    on FGVC-Aircraft (|U| = 6,667, C = 100) rounds 3/6/9 take 19/39/59 instead of 20/40/60."""
    share = n_unlabeled // rounds if inner_floor else n_unlabeled / rounds
    return min(int(round_index * share / n_classes), n_unlabeled // n_classes)


# --- CPL: candidate pseudo-labels (vanillaer/CPL-ICML2024, utils/clip_pseudolabels.py) -------------

def intra_instance_sets(probs: np.ndarray, alpha: float, exact_boundary: bool = False) -> np.ndarray:
    """Per image, classes in descending posterior until their cumulative sum first exceeds τ₁, the
    α-quantile over images of the top posterior. The top class is always in. Returns a bool mask.

    `exact_boundary` (the reference protocols) keeps the class after an image whose top posterior is
    τ₁ itself, as the authors' `cumsum > τ₁` does: τ₁ is that data point exactly when (N − 1)·α is
    an integer (`quantile_exact`) and the mass before a class is the running sum up to the class
    above, not `cumsum − p`, which in floating point can land above τ₁ and drop it.

    A chunk of rows at a time, each ranked only PREFERENCE_WIDTH classes deep unless its set reaches
    that deep: the same sums, so the same mask, and the mask is the only N x C array."""
    n, c = probs.shape
    top = probs.max(axis=1)
    tau = quantile_exact(top, alpha) if exact_boundary else float(np.quantile(top, alpha))
    kept_by_mass = _kept_by_running_mass if exact_boundary else _kept_by_mass
    width = min(PREFERENCE_WIDTH, c)
    mask = np.zeros(probs.shape, dtype=bool)
    for rows in _chunks(n, c):
        chunk, block = probs[rows], mask[rows]
        order = _first_columns(-chunk, width)
        keep = kept_by_mass(np.take_along_axis(chunk, order, axis=1), tau)
        np.put_along_axis(block, order, keep, axis=1)
        if width < c:                                     # sets that may reach deeper: rank those rows fully
            deeper = np.flatnonzero(keep[:, -1])
            order = np.argsort(-chunk[deeper], axis=1, kind="stable")
            keep = kept_by_mass(np.take_along_axis(chunk[deeper], order, axis=1), tau)
            sets = np.zeros(keep.shape, dtype=bool)
            np.put_along_axis(sets, order, keep, axis=1)
            block[deeper] = sets
    return mask


def _kept_by_mass(sorted_probs: np.ndarray, tau: float) -> np.ndarray:
    """Which ranked classes the intra set keeps: those whose mass ranked above is at most τ₁."""
    before = np.cumsum(sorted_probs, axis=1) - sorted_probs   # mass of the classes ranked above
    keep = before <= tau
    keep[:, 0] = True
    return keep


def _kept_by_running_mass(sorted_probs: np.ndarray, tau: float) -> np.ndarray:
    """`_kept_by_mass` with the mass above a class read off the running sum at the class above it."""
    running = np.cumsum(sorted_probs, axis=1)
    keep = np.ones(sorted_probs.shape, dtype=bool)
    keep[:, 1:] = running[:, :-1] <= tau
    return keep


def quantile_exact(values: np.ndarray, q: float) -> float:
    """numpy's linear quantile, except that where (N − 1)·q is an integer up to rounding it is that
    order statistic itself (np.quantile can return it an ulp off, torch.quantile in float32 too)."""
    position = (len(values) - 1) * q
    nearest = round(position)
    if abs(position - nearest) <= 1e-9 * max(1.0, position):
        return float(np.partition(values, nearest)[nearest])
    return float(np.quantile(values, q))


def inter_instance_sets(probs: np.ndarray, beta: float) -> np.ndarray:
    """Per class c, the images whose p(c|x) reaches the β-quantile of column c. Returns a bool mask.
    A chunk of columns at a time (a column's quantile is its own): the mask is the only N x C array."""
    mask = np.empty(probs.shape, dtype=bool)
    for columns in _chunks(probs.shape[1], len(probs)):
        chunk = probs[:, columns]
        mask[:, columns] = chunk >= np.quantile(chunk, beta, axis=0, keepdims=True)
    return mask


def assign_to_pools(probs: np.ndarray, mask: np.ndarray | None, caps: np.ndarray) -> np.ndarray:
    """CPL's evicting per-class pools: each image asks its candidate classes (`mask`; None: all) in
    descending posterior; a class holds at most `caps[c]` images, keeping the most confident (p(c|x),
    then lower index), and an evicted image asks its next candidate. Returns the class of each image,
    -1 if it has none.

    Images ask in any order and end in the same pools (the image-proposing stable assignment), so
    the result equals the authors' batched recursion while being deterministic. Here every free image
    asks at once, round after round, and passes over the classes that would refuse it now: a full
    pool only gets stronger, so they would refuse it later too. That includes every class it has
    asked, so an image that has run through its list reads the next PREFERENCE_WIDTH classes that
    would admit it from its row alone; nothing N x C is sorted or held."""
    n, c = probs.shape
    caps = np.asarray(caps, dtype=np.int64)
    assigned = np.full(n, -1, dtype=np.int64)
    if n == 0 or not (caps > 0).any():
        return assigned
    # Keys are -p, so both sides prefer the lower (key, index). A class admits an image whose (key,
    # image) is below its bar: +inf while it has room, -inf with no room at all, its weakest holder once
    # full. The last entry is class -1, a list's padding, which admits nobody.
    bar_key = np.where(np.append(caps, 0) > 0, np.inf, -np.inf).astype(probs.dtype)
    bar_image = np.zeros(c + 1, dtype=np.int64)
    width = min(PREFERENCE_WIDTH, c)

    def admitting_classes(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each image's best `width` classes among those that would admit it now and its keys for
        them, best first; class -1 (key +inf) past the last."""
        listed = np.empty((len(images), width), dtype=np.int32)
        listed_key = np.empty((len(images), width), dtype=probs.dtype)
        for part in _chunks(len(images), c):
            rows = images[part]
            key = probs[rows]
            np.negative(key, out=key)
            admits = _admits(rows, key, np.arange(c), bar_key, bar_image)
            if mask is not None:
                admits &= mask[rows]
            listed[part] = columns = _first_columns(key, width, admits)
            listed_key[part] = np.where(columns >= 0, np.take_along_axis(key, columns, axis=1), np.inf)
        return listed, listed_key

    listed, listed_key = admitting_classes(np.arange(n))
    held_image = np.zeros(0, dtype=np.int64)
    held_class = np.zeros(0, dtype=np.int32)
    held_key = np.zeros(0, dtype=probs.dtype)
    asking = np.arange(n)
    while len(asking):
        # Each asking image asks its first listed class that would admit it now (those it asked before
        # refuse it now). One whose list is all refusals reads on; one with no class left stays out.
        images, labels, keys = [], [], []
        reading = asking
        while len(reading):
            label, key = listed[reading], listed_key[reading]
            admits = _admits(reading, key, label, bar_key, bar_image)
            found = admits.any(axis=1)
            first = admits.argmax(axis=1)[found]
            images.append(reading[found])
            labels.append(label[found, first])
            keys.append(key[found, first])
            reading = np.sort(reading[~found & (label[:, -1] >= 0)])   # in row order: cheaper to read
            listed[reading], listed_key[reading] = admitting_classes(reading)
        # Each asked class keeps its best caps[c] of holders and askers, by (key, image).
        touched = np.zeros(c, dtype=bool)
        touched[np.concatenate(labels)] = True
        contested = touched[held_class]
        image = np.concatenate([held_image[contested], *images])
        label = np.concatenate([held_class[contested], *labels])
        key = np.concatenate([held_key[contested], *keys])
        order = np.lexsort((image, key, label))
        image, label, key = image[order], label[order], key[order]
        rank = np.arange(len(label)) - np.searchsorted(label, label)
        kept = rank < caps[label]
        weakest = rank == caps[label] - 1              # that class is full: its last holder is the bar
        bar_key[label[weakest]] = key[weakest]
        bar_image[label[weakest]] = image[weakest]
        held_image = np.concatenate([held_image[~contested], image[kept]])
        held_class = np.concatenate([held_class[~contested], label[kept]])
        held_key = np.concatenate([held_key[~contested], key[kept]])
        asking = image[~kept]
    assigned[held_image] = held_class
    return assigned


def assign_to_pools_reference(probs: np.ndarray, mask: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """CPL's pools as the authors' `_fill_pools` and `ClassPool.update` run them (vanillaer/CPL-ICML2024
    utils/clip_pseudolabels.py, utils/utils.py), ties included: each image lists its candidates by
    descending float32 p (the lower class first on a tie, as `torch.max`), keyed by float32 `1 − p`
    (which merges p closer than ~6e-8) and never placed where p < 1e-7. Round after round every
    image outside the pools and not out of candidates proposes its next one, classes in ascending
    order and images in ascending order within a class; a pool with room takes it, a full pool
    replaces its first slot holding the largest key only if the newcomer's key is smaller, so on a
    tie the incumbent stays. Returns the class of each image, -1 if it has none.

    Their result depends on the proposal order only through ties, and this order is theirs; it is a
    Python loop over proposals, meant for the reference protocols' pools, not a million images."""
    n, c = probs.shape
    assigned = np.full(n, -1, dtype=np.int64)
    p32 = probs.astype(np.float32)
    row, column = np.nonzero(mask)
    order = np.lexsort((column, -p32[row, column], row))       # per image: p descending, class ascending
    row, column = row[order], column[order]
    key = (np.float32(1) - p32[row, column]).astype(np.float32)
    key[p32[row, column] < 1e-7] = np.inf                        # the authors' eps: never placed
    n_candidates = np.bincount(row, minlength=n)
    start = np.concatenate([[0], np.cumsum(n_candidates)[:-1]])
    asked = np.zeros(n, dtype=np.int64)
    slots_image: list[list[int]] = [[] for _ in range(c)]
    slots_key: list[list[float]] = [[] for _ in range(c)]
    in_pool = np.zeros(n, dtype=bool)
    out = n_candidates == 0                                      # CPL drops empty sets beforehand
    while True:
        active = np.flatnonzero(~in_pool & ~out)
        if not len(active):
            break
        at = start[active] + asked[active]
        asked[active] += 1
        labels, keys = column[at], key[at]
        for index in np.lexsort((active, labels)):               # classes ascending, images ascending
            label, image, value = int(labels[index]), int(active[index]), float(keys[index])
            held_image, held_key = slots_image[label], slots_key[label]
            if len(held_image) < caps[label]:
                if value < 1e4:
                    held_image.append(image)
                    held_key.append(value)
            elif held_key and max(held_key) > value:
                slot = held_key.index(max(held_key))             # the first slot holding the largest key
                held_image[slot], held_key[slot] = image, value
        in_pool[:] = False
        for label, held in enumerate(slots_image):
            in_pool[held] = True
            assigned[held] = label
        out = (asked == n_candidates) & ~in_pool
    assigned[~in_pool] = -1
    return assigned


def _admits(images: np.ndarray, key: np.ndarray, labels: np.ndarray, bar_key: np.ndarray,
            bar_image: np.ndarray) -> np.ndarray:
    """Whether class labels[.., j] takes image images[r] at key[r, j]: (key, image) below its bar."""
    bar = bar_key[labels]
    admits = key < bar
    tied = key == bar
    if tied.any():                                        # the bar's posterior: the lower image wins
        row, column = np.nonzero(tied)
        admits[row, column] = images[row] < bar_image[np.broadcast_to(labels, key.shape)[row, column]]
    return admits


def _first_columns(key: np.ndarray, width: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Each row's `width` first columns by (key, column) ascending, among the `allowed` ones (None:
    all); -1 past a row's last. Where most columns are allowed, np.partition first cuts each row at
    its width-th key (ties there leave more than `width`, which the column order settles)."""
    n, c = key.shape
    if allowed is None or np.count_nonzero(allowed) > 2 * n * width:
        if allowed is not None and not allowed.all():
            key = np.where(allowed, key, np.inf)
        boundary = np.partition(key, width - 1, axis=1)[:, width - 1:width]
        allowed = key <= boundary if allowed is None else allowed & (key <= boundary)
    flat = np.flatnonzero(allowed)
    row, column = np.divmod(flat, c)
    values = key.ravel()[flat]
    first = np.full((n, width), -1, dtype=np.int32)
    if (np.bincount(row, minlength=n) == width).all():  # every row has exactly `width`: sort rows
        order = np.argsort(values.reshape(n, width), axis=1, kind="stable")
        first[:] = np.take_along_axis(column.reshape(n, width), order, axis=1)
        return first
    order = np.lexsort((values, row))                  # stable: equal keys stay in column order
    row, column = row[order], column[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row)
    keep = rank < width
    first[row[keep], rank[keep]] = column[keep]
    return first


def _chunks(length: int, other: int) -> list[slice]:
    """Slices of range(length) whose chunk of a length x other matrix holds at most CHUNK_ELEMENTS."""
    step = max(1, CHUNK_ELEMENTS // max(other, 1))
    return [slice(start, min(start + step, length)) for start in range(0, length, step)]


def cpl_pool_caps(k: int, previous_counts: np.ndarray | None, n_classes: int) -> np.ndarray:
    """Pool sizes for a round with target K: CPL grows every pool by K minus the fullest pool of the
    last round, so a class that filled only part of its pool grows from what it filled."""
    if previous_counts is None:
        return np.full(n_classes, k, dtype=np.int64)
    increment = max(0, k - int(previous_counts.max(initial=0)))
    return np.minimum(previous_counts + increment, k).astype(np.int64)


def select_cpl(probs: np.ndarray, alpha: float, beta: float, caps: np.ndarray, soft: bool,
               rules: str = "exact") -> Candidates:
    """CPL: candidate sets = intra ∩ inter; images with an empty set are dropped; the rest fill the
    pools. `soft` weights a set by the posterior restricted to it (round 1), else by a binary mask.

    `rules="reference"` (the grip/cpl protocols) is the authors' code to the tie: the exact intra
    boundary, their `(PL₁ > 1e-7) & (PL₂ > 1e-7)` intersection of the two sets' renormalised
    posteriors, and their pools' order and tie rule (`assign_to_pools_reference`)."""
    reference = rules == "reference"
    intra = intra_instance_sets(probs, alpha, exact_boundary=reference)
    inter = inter_instance_sets(probs, beta)
    mask = intra & inter
    if reference:
        mask &= _renormalised_above(probs, intra) & _renormalised_above(probs, inter)
    assigned = (assign_to_pools_reference if reference else assign_to_pools)(probs, mask, caps)
    rows = np.flatnonzero(assigned >= 0)
    labels = assigned[rows]
    weights = np.where(mask[rows], probs[rows] if soft else 1.0, 0.0).astype(np.float32)
    if soft:
        weights /= weights.sum(axis=1, keepdims=True)
    return Candidates(rows, labels, weights, probs[rows, labels].astype(np.float32))


def _renormalised_above(probs: np.ndarray, mask: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Where `normalise(p ⊙ mask) > eps`, the authors' test of a candidate (an empty row: nowhere)."""
    masked = np.where(mask, probs, 0).astype(np.float32)
    total = masked.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return masked / total > eps
