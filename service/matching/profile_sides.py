"""From records and stored rows to what the store keeps and what comparison needs.

One place turns a validated record into its derived features (avatar digest and hashes,
normalized name and handle) and a stored row back into a `ProfileSide`, so ingest, check and
scan all see a profile the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from indexers import avatar as avatar_hashing
from indexers import text
from indexers.compare import ProfileSide, SideColumns
from models.errors import ImageError
from models.profile import ProfileQuery, ProfileRecord
from models.result import Context
from service.matching.avatar_source import AvatarSource
from service.store import AvatarBlob, ComparableRow, ProfileRow

HASH_SHAPE = (2, avatar_hashing.VIEWS, avatar_hashing.CODE_BYTES)


@dataclass(frozen=True, slots=True)
class Avatar:
    """A decoded avatar: the exact bytes (kept for evidence) and their hashes."""

    blob: AvatarBlob
    hashes: np.ndarray


def avatar_of(data: bytes, digest: avatar_hashing.AvatarDigest) -> Avatar:
    """An avatar's exact bytes and what decoding them found, as the store keeps them."""
    blob = AvatarBlob(
        sha256=digest.sha256,
        data=data,
        mime=digest.mime,
        width=digest.width,
        height=digest.height,
    )
    return Avatar(blob=blob, hashes=digest.hashes)


class AvatarReader:
    """Reads and hashes a record's avatar with the configured size limits."""

    def __init__(self, source: AvatarSource, *, max_bytes: int, max_pixels: int) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels

    def read(self, record: ProfileRecord, *, base_dir: Path | None) -> Avatar | None:
        """The record's avatar, or None when it has none; errors name the avatar field used."""
        data = self._source.read(record, base_dir=base_dir)
        if data is None:
            return None
        try:
            digest = avatar_hashing.decode_avatar(
                data, max_bytes=self._max_bytes, max_pixels=self._max_pixels
            )
        except ImageError as exc:
            # Name the field the caller sent, not the internal "avatar".
            raise ImageError(exc.message, field=_avatar_field(record)) from None
        return avatar_of(data, digest)


def _avatar_field(record: ProfileRecord) -> str:
    if record.avatar_base64:
        return "avatar_base64"
    if record.avatar_path:
        return "avatar_path"
    return "avatar_url"


def context_of(record: ProfileRecord | ProfileRow) -> Context:
    return Context(
        created_at=record.created_at,
        followers_count=record.followers_count,
        verified=record.verified,
    )


def side_of_row(row: ProfileRow) -> ProfileSide:
    """A stored profile as comparison sees it (no model call: features are stored)."""
    return ProfileSide(
        display_name=row.display_name,
        name_key=row.name_key,
        handle=row.handle,
        handle_norm=row.handle_norm,
        bio=row.bio,
        avatar_hashes=hashes_from_bytes(row.avatar_hashes),
        bio_vector=vector_from_bytes(row.bio_vector),
        context=context_of(row),
    )


def query_side(
    query: ProfileQuery,
    own: ProfileRow | None,
    *,
    avatar: Avatar | None,
    clues: Literal["whole", "each"],
) -> ProfileSide:
    """A query as comparison sees it, but for its bio vector (callers embed bios in batches).

    `own` is the stored profile the query completes (None: only the fields sent are
    compared); each field the query gives replaces the stored one, and `avatar` is the query's
    own avatar, read. Its context (the clues of which side of a pair is the copy: creation
    date, followers, verified) is taken `"whole"`, as checks take it: the query's, when it
    gives any clue or completes no profile, else the stored one's; or field by field
    (`"each"`, as a watchlist entry keeps it): each clue the query gives, else the stored one.
    """
    side = side_of_row(own) if own is not None else ProfileSide()
    if query.display_name:
        side.display_name = query.display_name
        side.name_key = text.normalize_name(query.display_name)
    if query.handle:
        side.handle = query.handle
        side.handle_norm = text.normalize_handle(query.handle)
    if query.bio:
        side.bio = query.bio
    if avatar is not None:
        side.avatar_hashes = avatar.hashes
    if clues == "whole":
        if own is None or query.created_at or query.followers_count is not None or query.verified:
            side.context = context_of(query)
    else:
        stored = side.context
        side.context = Context(
            created_at=query.created_at or stored.created_at,
            followers_count=(
                query.followers_count
                if query.followers_count is not None
                else stored.followers_count
            ),
            verified=query.verified if query.verified is not None else stored.verified,
        )
    return side


def columns_of_rows(rows: Sequence[ComparableRow], *, bio_dim: int) -> SideColumns:
    """Stored profiles as the columns a screen reads, straight from their stored bytes."""
    return SideColumns.of_bytes(
        name_keys=[row.name_key for row in rows],
        handle_norms=[row.handle_norm for row in rows],
        avatar_hashes=[row.avatar_hashes for row in rows],
        bio_vectors=[row.bio_vector for row in rows],
        bio_dim=bio_dim,
    )


def hashes_from_bytes(data: bytes | None) -> np.ndarray | None:
    if data is None:
        return None
    return np.frombuffer(data, dtype=np.uint8).reshape(HASH_SHAPE)


def vector_from_bytes(data: bytes | None) -> np.ndarray | None:
    if data is None:
        return None
    return np.frombuffer(data, dtype=np.float32)


def name_keys(display_name: str | None, handle: str | None) -> tuple[str, str]:
    """The normalized (look-alike folded, decorations stripped) name and handle."""
    return text.normalize_name(display_name), text.normalize_handle(handle)
