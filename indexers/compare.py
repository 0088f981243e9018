"""Compare one profile with many: the per-field evidence a pair is scored on.

Pure functions over `ProfileSide`s, which both a fresh query and a stored profile become, so a
check, a scan and the training script measure pairs with exactly the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import indexers.text as text
from indexers import avatar as avatar_hashing
from indexers.bio import normalize_bio
from models.result import Context, PairEvidence
from models.scoring import NEAR_HANDLE_EDITS, SHARED_BY_FEW, SHARED_NAME

# Two bios this alike are one text with cosmetic edits; also the cut for "many share this bio".
BIO_NEAR_IDENTICAL = 0.95


@dataclass(slots=True)
class ProfileSide:
    """What comparison needs of one profile: normalized keys, hashes, vector and context."""

    display_name: str | None = None
    name_key: str = ""
    handle: str | None = None  # as written: look-alike swaps show only before normalizing
    handle_norm: str = ""
    bio: str | None = None
    avatar_hashes: np.ndarray | None = None  # (2, VIEWS, CODE_BYTES) uint8
    bio_vector: np.ndarray | None = None  # (dim,) float32, L2-normalized
    context: Context = field(default_factory=Context)


@dataclass(frozen=True, slots=True)
class Popularity:
    """How many unrelated indexed identities share the query's avatar, bio or name: the more,
    the less it says (a default silhouette, a template bio, "Maria Garcia")."""

    avatar: int = 0
    bio: int = 0
    name: int = 0
    handle: int = 0  # unrelated identities whose handle has the query's core
    avatar_copies: int = 0  # sharers of the avatar that resemble the query: its copies
    # How far the nearest unrelated identities' avatars are from the query's (the two nearest,
    # in bits, within RIVAL_SEARCH_BITS): a match no closer than these is not singled out.
    avatar_strangers: tuple[int, ...] = ()


# Two additions to a name this alike are one, copied ("archi" and "arci").
_SAME_ADDITION = 0.75
# A transformed copy of a photo (resized, cropped, filtered) stays this close.
NEAR_COPY_BITS = 12
# A sharer whose name or handle is this alike the query's is one of its copies, not a stranger.
FAMILY_LIKENESS = 0.8
# A match is singled out from the strangers around the query's avatar when the nearest of them
# is at least this many bits farther (a ratio test, as feature matching does); the avatar
# search reports strangers up to this far, so that a near-copy's margin can be read.
RIVAL_MARGIN_BITS = 2
RIVAL_SEARCH_BITS = NEAR_COPY_BITS + RIVAL_MARGIN_BITS
# More unrelated sharers than this, and the avatar or bio is a stock one: it no longer ties
# the accounts that share it into one family when the name's sharers are counted.
STOCK_FROM = 2


@dataclass(frozen=True, slots=True)
class Sharers:
    """Which candidates carry the query's avatar (a near-copy) or bio (near-identical), and
    who every candidate is (its folded name and handle), by candidate key."""

    avatar: tuple[object, ...] = ()
    bio: tuple[object, ...] = ()
    # Those whose avatar is a near-copy (NEAR_COPY_BITS): a namesake who also copied the photo
    # (or the bio, near-identical) is a copy, not a namesake. Bios count only near-identical:
    # a bio's vector moves a little with the batch it was embedded in, and a looser cut would
    # let that move a namesake in or out.
    avatar_near: tuple[object, ...] = ()
    # Every candidate the avatar search found within RIVAL_SEARCH_BITS, with its distance.
    avatar_bits: tuple[tuple[object, int], ...] = ()


def identity_popularity(
    query: ProfileSide, sharers: Sharers, identities: dict[Any, tuple[str, str, str]]
) -> Popularity:
    """How many *unrelated* identities share the query's avatar, bio, name and handle core.

    A photo shared by a dozen strangers is a stock photo; the same photo worn by a dozen
    accounts that also carry the query's name or handle is the query's own photo, copied by a
    family of clones. So a sharer that resembles the query's identity (its name or its handle
    alike) is left out of the avatar's and the bio's count, and a namesake that also wears the
    query's (not stock) avatar or near-identical bio, or its handle (alike beyond the name, or
    within a keystroke or two as written), is left out of the name's. `identities` maps each
    candidate key to its (name key, handle norm, handle); a sharer missing from it (deleted
    since the index was searched) is not counted.
    """

    def resembles(key: object) -> bool:
        name_key, handle_norm, _ = identities[key]
        return resembles_identity(query, name_key, handle_norm)

    def copies_handle(name_key: str, handle_norm: str, handle: str) -> bool:
        if text.handle_edits(query.handle, handle) <= NEAR_HANDLE_EDITS:
            return True
        return _handle_alike(query, handle_norm) and not _agree_only_in_the_name(
            query_rest, text.handle_beyond_name(handle_norm, name_key)
        )

    # A sharer with no row was deleted since the index was searched: it shares nothing now.
    avatar_sharers = [key for key in sharers.avatar if key in identities]
    avatar = sum(1 for key in avatar_sharers if not resembles(key))
    copies = len(avatar_sharers) - avatar
    strangers = tuple(
        sorted(
            bits for key, bits in sharers.avatar_bits if key in identities and not resembles(key)
        )[:2]
    )
    bio = sum(1 for key in sharers.bio if key in identities and not resembles(key))
    tied = set(sharers.avatar_near if avatar <= STOCK_FROM else ()) | set(
        sharers.bio if bio <= STOCK_FROM else ()
    )
    # A handle's core ("tina" of "imtina1", "johnreads" of "john.reads") that strangers carry
    # too is a spelling anyone could pick: those who carry neither the query's name nor its
    # photo or bio count against it, as namesakes count against a name.
    handle = sum(
        1
        for key, (name_key, handle_norm, _) in identities.items()
        if query.handle_norm
        and handle_norm == query.handle_norm
        and key not in tied
        and not _name_alike(query.name_key, name_key)
    )
    if not query.name_key:
        return Popularity(
            avatar=avatar,
            bio=bio,
            handle=handle,
            avatar_copies=copies,
            avatar_strangers=strangers,
        )
    # A namesake whose handle only spells the shared name chose it as any namesake would.
    query_rest = text.handle_beyond_name(query.handle_norm, query.name_key)
    # A namesake carries the name or one like it: a middle initial, a title or a typo must not
    # make "James K. Anderson" look unique beside twenty James Andersons.
    name = sum(
        1
        for key, (name_key, handle_norm, handle) in identities.items()
        if _name_alike(query.name_key, name_key)
        and key not in tied
        and not copies_handle(name_key, handle_norm, handle)
    )
    return Popularity(
        avatar=avatar,
        bio=bio,
        name=name,
        handle=handle,
        avatar_copies=copies,
        avatar_strangers=strangers,
    )


def resembles_identity(query: ProfileSide, name_key: str, handle_norm: str) -> bool:
    """Whether an account carries the query's identity (its name or its handle alike): one of
    its copies, or the person, rather than a stranger."""
    return _name_alike(query.name_key, name_key) or _handle_alike(query, handle_norm)


def avatar_singled_out(
    query: ProfileSide, candidate: ProfileSide, bits: int, popularity: Popularity
) -> bool:
    """Whether an avatar match says "this account copied the picture", not "these pictures
    happen to meet": the two agree view for view (a copy of the whole picture), or no stranger
    comes within RIVAL_MARGIN_BITS of the match. Over a large index some unrelated picture
    always comes within a few bits of any photo at its closest pair of views (`bench.false_alarms`),
    so closeness alone does not say which account, if any, copied it."""
    if query.avatar_hashes is None or candidate.avatar_hashes is None:
        return False
    if avatar_hashing.aligned_distance(query.avatar_hashes, candidate.avatar_hashes) <= (
        avatar_hashing.AGREEING_VIEWS_BITS
    ):
        return True
    rivals = list(popularity.avatar_strangers)
    # The candidate is one of the strangers the search found, unless it carries the identity.
    if bits in rivals and not resembles_identity(query, candidate.name_key, candidate.handle_norm):
        rivals.remove(bits)
    return all(rival > bits + RIVAL_MARGIN_BITS for rival in rivals)


def _name_alike(query_key: str, other_key: str) -> bool:
    return bool(query_key and other_key) and (
        text.name_similarity(query_key, other_key) >= FAMILY_LIKENESS
    )


def _handle_alike(query: ProfileSide, other_norm: str) -> bool:
    if not text.handle_carries_identity(None, query.handle_norm):
        return False
    if not text.handle_carries_identity(None, other_norm):
        return False
    return text.handle_similarity(query.handle_norm, other_norm) >= FAMILY_LIKENESS


def compare(
    query: ProfileSide,
    candidates: Sequence[ProfileSide],
    *,
    popularity: Popularity = Popularity(),  # noqa: B008 - frozen, immutable default
) -> list[PairEvidence]:
    """The evidence for each (query, candidate) pair, in candidate order."""
    avatar_bits = _avatar_bits(query, candidates)
    bio_scores = _bio_scores(query, candidates)
    query_bio = normalize_bio(query.bio)
    query_lookalikes = text.lookalikes(query.display_name or "")
    query_handle_rest = text.handle_beyond_name(query.handle_norm, query.name_key)
    query_declares = text.declares_unaffiliated(query.display_name, query.bio)
    # Whether other indexed identities carry the query's name: then an everyday word beside it
    # in both handles is what namesakes pick too.
    namesakes = popularity.name > SHARED_BY_FEW
    evidence = []
    for i, cand in enumerate(candidates):
        bits = avatar_bits[i]
        name_sim = (
            text.name_similarity(query.name_key, cand.name_key)
            if query.name_key and cand.name_key
            else None
        )
        # A handle that cannot tell people apart (a platform default, a generic word, a
        # core of a few letters) is no evidence, for or against.
        handle_sim = text.handle_evidence(
            query.handle, query.handle_norm, cand.handle, cand.handle_norm
        )
        shared_name = name_sim is not None and name_sim >= SHARED_NAME
        lookalikes = (
            (text.lookalikes(cand.display_name or "") or query_lookalikes) if shared_name else []
        )
        # How the handles relate to the name matters only when the two share that name.
        handle_lookalike = shared_name and text.is_lookalike_handle(query.handle, cand.handle)
        # A letter apart in handles mirrors a letter apart in names ("Mason" and "Manon"): a
        # misspelt handle is disguise only next to the very same name.
        handle_typo = (
            not handle_lookalike
            and bool(query.name_key)
            and query.name_key == cand.name_key
            and text.is_typo_handle(query.handle, cand.handle)
        )
        query_rest, cand_rest, names_differ = (
            _rests_beyond_name(query, cand, query_handle_rest, shared_name=shared_name)
            if handle_sim is not None
            else (None, None, False)
        )
        # A namesake's handle may spell the same name, but never by swapping look-alike
        # characters into another's handle, nor by misspelling it: that is disguise. Two
        # different names spell one handle only where they share the words it spells
        # ("imtina" of Tina Haskett and of Tina Darst, "jmiller" of James and Julie Miller):
        # those who share a first name or a surname are many.
        only_the_name = not (handle_lookalike or handle_typo) and (
            query_rest == cand_rest
            and query_rest is not None
            and (query_rest == "" or text.is_ordinary_words(query_rest))
            if names_differ
            else _agree_only_in_the_name(query_rest, cand_rest, namesakes=namesakes)
        )
        cand_bio = normalize_bio(cand.bio)
        evidence.append(
            PairEvidence(
                avatar=None if bits is None else avatar_hashing.avatar_similarity(bits),
                avatar_bits=bits,
                avatar_crowded=bits is not None
                and not avatar_singled_out(query, cand, bits, popularity),
                avatar_popularity=popularity.avatar,
                avatar_copies=popularity.avatar_copies,
                display_name=name_sim,
                display_name_exact=bool(query.name_key) and query.name_key == cand.name_key,
                display_name_verbatim=text.is_verbatim(query.display_name, cand.display_name),
                handle=handle_sim,
                handle_exact=handle_sim == 1.0 and query.handle_norm == cand.handle_norm,
                # A look-alike swap and a one-letter change are one trick: disguise.
                handle_lookalike=handle_lookalike or handle_typo,
                handle_typo=handle_typo,
                handle_edits=None
                if handle_sim is None
                else text.handle_edits(query.handle, cand.handle),
                handle_from_name=only_the_name,
                handles_only_name=cand_rest == "" and query_rest == "",
                bio=bio_scores[i],
                bio_exact=bool(query_bio) and query_bio.casefold() == cand_bio.casefold(),
                bio_popularity=popularity.bio,
                name_popularity=popularity.name,
                handle_popularity=popularity.handle,
                # A disclosure both carry was copied with the rest: it discloses nothing.
                declared_unaffiliated=query_declares
                != text.declares_unaffiliated(cand.display_name, cand.bio),
                lookalikes=lookalikes,
                query_context=query.context,
                candidate_context=cand.context,
            )
        )
    return evidence


@dataclass(frozen=True, slots=True)
class SideColumns:
    """The fields of many profiles that a screen of many pairs reads, as columns.

    Built straight from stored bytes for the candidates of a whole batch (no `ProfileSide` per
    candidate), so a screen costs a few array operations however many pairs it sees.
    """

    name_keys: list[str]
    handle_norms: list[str]
    avatar_hashes: np.ndarray  # (n, 2, VIEWS, CODE_BYTES) uint8; zeros where has_avatar is False
    has_avatar: np.ndarray
    bio_vectors: np.ndarray  # (n, dim) float32; zeros where has_bio is False
    has_bio: np.ndarray

    @classmethod
    def of(cls, sides: Sequence[ProfileSide], *, bio_dim: int) -> SideColumns:
        return cls.of_bytes(
            name_keys=[side.name_key for side in sides],
            handle_norms=[side.handle_norm for side in sides],
            avatar_hashes=[
                None if side.avatar_hashes is None else side.avatar_hashes.tobytes()
                for side in sides
            ],
            bio_vectors=[
                None if side.bio_vector is None else side.bio_vector.tobytes() for side in sides
            ],
            bio_dim=bio_dim,
        )

    @classmethod
    def of_bytes(
        cls,
        *,
        name_keys: list[str],
        handle_norms: list[str],
        avatar_hashes: Sequence[bytes | None],
        bio_vectors: Sequence[bytes | None],
        bio_dim: int,
    ) -> SideColumns:
        """Columns from stored bytes; a vector of another model's size counts as absent."""
        hash_shape = (2, avatar_hashing.VIEWS, avatar_hashing.CODE_BYTES)
        hashes, has_avatar = _stacked(avatar_hashes, int(np.prod(hash_shape)), np.uint8)
        vectors, has_bio = _stacked(bio_vectors, bio_dim * 4, np.float32)
        return cls(
            name_keys=name_keys,
            handle_norms=handle_norms,
            avatar_hashes=hashes.reshape(-1, *hash_shape),
            has_avatar=has_avatar,
            bio_vectors=vectors.reshape(-1, bio_dim),
            has_bio=has_bio,
        )


def _stacked(
    values: Sequence[bytes | None], size: int, dtype: type[np.generic]
) -> tuple[np.ndarray, np.ndarray]:
    """One array of `values` in a row each (zeros for a missing or wrong-sized value), and
    which rows are real: one join and one buffer read instead of an array per value."""
    fits = [v is not None and len(v) == size for v in values]
    blank = bytes(size)
    joined = b"".join([v if ok else blank for v, ok in zip(values, fits, strict=True)])  # type: ignore[misc]
    # Read-only over the joined bytes: screens only index it, so no copy.
    stacked = np.frombuffer(joined, dtype=dtype) if joined else np.zeros(0, dtype)
    return stacked, np.asarray(fits, dtype=bool)


@dataclass(frozen=True, slots=True)
class PairSimilarities:
    """The four field similarities of many pairs, as `compare` measures them (a name or handle
    one side lacks is 0); NaN where a side lacks the avatar or the bio."""

    avatar: np.ndarray
    bio: np.ndarray
    name: np.ndarray
    handle: np.ndarray


def pair_similarities(
    queries: SideColumns,
    candidates: SideColumns,
    query_of: np.ndarray,
    candidate_of: np.ndarray,
) -> PairSimilarities:
    """The similarities of the pairs (query `query_of[k]`, candidate `candidate_of[k]`), all at
    once: what a screen needs to bound each pair's score before comparing any in full."""
    count = len(query_of)
    avatar = np.full(count, np.nan)
    both = queries.has_avatar[query_of] & candidates.has_avatar[candidate_of]
    if both.any():
        bits = avatar_hashing.paired_distances(
            queries.avatar_hashes[query_of[both]], candidates.avatar_hashes[candidate_of[both]]
        )
        avatar[both] = np.maximum(0.0, 1.0 - bits / avatar_hashing.UNRELATED_BITS)
    bio = np.full(count, np.nan)
    both = queries.has_bio[query_of] & candidates.has_bio[candidate_of]
    if both.any():
        left = queries.bio_vectors[query_of[both]]
        right = candidates.bio_vectors[candidate_of[both]]
        bio[both] = np.clip(np.einsum("ij,ij->i", left, right), 0.0, 1.0)
    name = text.paired_name_similarities(
        queries.name_keys, candidates.name_keys, query_of, candidate_of
    )
    handle = text.paired_handle_similarities(
        queries.handle_norms, candidates.handle_norms, query_of, candidate_of
    )
    return PairSimilarities(avatar=avatar, bio=bio, name=name, handle=handle)


def _rests_beyond_name(
    query: ProfileSide, candidate: ProfileSide, query_rest: str | None, *, shared_name: bool
) -> tuple[str | None, str | None, bool]:
    """What each handle adds to the name it spells (None where it spells none of it), and
    whether the two names differ: each against its own display name where the names are
    alike; both against the fuller one where one is a short form of the other ("James" beside
    "James Johnson", both handles "jamesjohnson"), as a namesake may show a shorter name; and
    each against its own where the names differ (True)."""
    if shared_name:
        if query_rest is None:
            return None, None, False
        rest = text.handle_beyond_name(candidate.handle_norm, candidate.name_key)
        return query_rest, rest, False
    fuller = text.fuller_form(query.name_key, candidate.name_key)
    if fuller:
        return (
            text.handle_beyond_name(query.handle_norm, fuller),
            text.handle_beyond_name(candidate.handle_norm, fuller),
            False,
        )
    rest = text.handle_beyond_name(candidate.handle_norm, candidate.name_key)
    return query_rest, rest, True


def _agree_only_in_the_name(
    query_rest: str | None, candidate_rest: str | None, *, namesakes: bool = False
) -> bool:
    """Whether two handles that both spell their display name share nothing else: both are
    the bare name, or what each adds to it differs ("mayaokafor" and "mayaokaforart",
    "maria_garcia31" and "maria_garcia_dr"), or, where the name has `namesakes`, both add the
    same everyday word ("johnreads" of two John Smiths: many Johns read); not when the
    additions are one of their own, copied, or copied with a letter changed ("sonia_linus" and
    "sonia_linuss"). Misspellings of a handle that spells the name are
    `text.is_typo_handle`'s."""
    if query_rest is None or candidate_rest is None:
        return False
    if query_rest == candidate_rest:
        return query_rest == "" or (namesakes and text.is_ordinary_words(query_rest))
    # What each adds is its own ("art", "music") unless the two are one addition, copied with
    # a letter changed ("linus" and "linuss").
    return text.handle_similarity(query_rest, candidate_rest) < _SAME_ADDITION


def _batched(
    query_value: np.ndarray | None,
    candidate_values: Sequence[np.ndarray | None],
    measure: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> list[float | None]:
    """`measure(query, stacked candidates)` in one call for the candidates that have the
    field; None where either side lacks it."""
    out: list[float | None] = [None] * len(candidate_values)
    present = [i for i, value in enumerate(candidate_values) if value is not None]
    if query_value is None or not present:
        return out
    measured = measure(query_value, np.stack([candidate_values[i] for i in present]))  # type: ignore[misc]
    for row, i in enumerate(present):
        out[i] = float(measured[row])
    return out


def _avatar_bits(query: ProfileSide, candidates: Sequence[ProfileSide]) -> list[int | None]:
    bits = _batched(
        query.avatar_hashes,
        [c.avatar_hashes for c in candidates],
        avatar_hashing.avatar_distances,
    )
    return [None if b is None else int(b) for b in bits]


def _bio_scores(query: ProfileSide, candidates: Sequence[ProfileSide]) -> list[float | None]:
    return _batched(
        query.bio_vector,
        [c.bio_vector for c in candidates],
        lambda q, matrix: np.clip(matrix @ q, 0.0, 1.0),
    )
