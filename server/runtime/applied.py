"""A batch's forget.applied payload as its batch tag records it (recovery, and a worker retrying a batch
the engine already published)."""

from __future__ import annotations

from typing import Any

from forgetd.server.runtime import events
from forgetd.server.runtime.events import ModelState, SubjectOutcome
from forgetd.server.store.batch_tag import BatchTag

__all__ = ["subject_outcomes", "applied_from_tag"]


def subject_outcomes(tag: BatchTag) -> list[SubjectOutcome]:
    """The forget.applied subjects a batch tag names (the tag holds them in the ledger's spelling)."""
    return [SubjectOutcome(s.subject_ref, s.shard, s.slice, s.region, s.strategy, s.guarantee) for s in tag.subjects]


def applied_from_tag(tag: BatchTag, model: ModelState, *, apply_micros: int, queued_micros: int, recovered: bool,
                     device: str | None) -> dict[str, Any]:
    """The forget.applied of a batch the engine published, as its tag records it (recovery, and a retry after
    a failure that came after the engine's commit)."""
    return events.applied_payload(
        request_ids=list(tag.request_ids),
        strategy=tag.strategy,
        resolved_strategy=tag.resolved_strategy,
        subjects=subject_outcomes(tag),
        model=model,
        residue_steps=tag.residue_steps,
        samples_read=tag.samples_read,
        apply_micros=apply_micros,
        queued_micros=queued_micros,
        recovered=recovered,
        device=device,
        encoder_residue=tag.encoder_residue,
    )
