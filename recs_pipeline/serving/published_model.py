"""The model behind each published day, pinned as ``recommendations/D/published_model.pt``.

A later run of ``trained_model`` replaces ``model.pt``, never what was published: publication
pins the exact bytes it served from, and a crash between the warehouse's commit and the pin is
found (:func:`published_model_problems`) and repaired (:func:`converge_published_models`) by the
next publication or the doctor.
"""

from __future__ import annotations

from collections.abc import Callable

from recs_pipeline.infra.artifacts import (
    MODEL,
    PUBLISHED_MODEL,
    ArtifactError,
    Stamp,
    UrlArtifactStore,
)

Log = Callable[[str], None]


def pin_published_model(store: UrlArtifactStore, key: str, payload: bytes) -> Stamp:
    """Keep the model.pt behind ``key``'s published lists as ``recommendations/key/
    published_model.pt``, byte for byte (same sha256): a later run of trained_model with
    another model replaces model.pt, not what was published."""
    return store.put_payload(PUBLISHED_MODEL, key, payload)


def published_model_problems(
    con, store: UrlArtifactStore, verify: bool = False
) -> dict[str, tuple[str, str]]:
    """Each day whose published_model.pt is not the model ``serving.publications`` records for
    its lists: {day: (the recorded sha256, why)}. A crash between a publication's commit and its
    pin leaves the earlier model pinned beside the new lists. ``verify`` reads every pin whole
    (its checksum checked, as the doctor does); otherwise only their headers are read, cheap
    enough for every publication. Days whose model is not recorded are not checked."""
    found = {}
    for day, sha256 in con.execute(
        """SELECT as_of_date, model_sha256 FROM serving.publications
           WHERE model_sha256 IS NOT NULL ORDER BY 1"""
    ).fetchall():
        key = day.isoformat()
        try:
            stamp = (
                store.stamp(PUBLISHED_MODEL, key)
                if verify
                else store.recorded(PUBLISHED_MODEL, key)
            )
        except ArtifactError as error:
            found[key] = (sha256, str(error))
            continue
        if stamp is None or stamp.sha256 != sha256:
            held = "nothing" if stamp is None else f"model {stamp.sha256[:12]}"
            found[key] = (
                sha256,
                f"{PUBLISHED_MODEL.at(key)} holds {held}, the lists were published from model"
                f" {sha256[:12]}",
            )
    return found


def repin_published_model(store: UrlArtifactStore, key: str, sha256: str) -> str | None:
    """Pin trained_model(key)'s model.pt as ``key``'s published model if it is the one the
    lists were published from (fingerprint ``sha256``); returns why it cannot, or None."""
    try:
        stamp, payload = store.get_payload(MODEL, key)
    except ArtifactError as error:
        return f"{error}; re-publish {key}"
    if stamp.sha256 != sha256:
        return (
            f"{MODEL.at(key)} is now model {stamp.sha256[:12]}, not the published"
            f" {sha256[:12]}: re-publish {key} (recommendations) to pin what it serves"
        )
    pin_published_model(store, key, payload)
    return None


def converge_published_models(
    con, store: UrlArtifactStore, log: Log, verify: bool = False
) -> dict[str, str]:
    """Re-pin every day whose published_model.pt disagrees with its publication record
    (:func:`published_model_problems`), from trained_model's model.pt when it is still the
    published one; logs each. Returns the days that could not be repaired and why."""
    left = {}
    for key, (sha256, problem) in published_model_problems(con, store, verify).items():
        failure = repin_published_model(store, key, sha256)
        if failure is None:
            log(f"{key}: re-pinned the published model ({problem})")
        else:
            left[key] = f"{problem}; {failure}"
    return left


def published_model(store: UrlArtifactStore, key: str) -> tuple[dict, Stamp]:
    """The checkpoint and stamp of the model behind ``key``'s published lists."""
    return store.get_stamped(PUBLISHED_MODEL, key)
