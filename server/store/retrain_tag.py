"""The retrain tag: the manifest's `tag` for a version made by a full retrain (`forgetd serve --gold-retrain`).

Why it exists: as with a forget's batch tag (batch_tag.py), the daemon appends the version's ledger entry,
`model.retrained`, only after the engine has published it, so a daemon that dies between the two leaves a
store one version ahead of its ledger. The engine writes this tag in the same rename that publishes the
version, and restart recovery writes the missing entry from it (flagged `recovered`) instead of retraining
again. Its text, `json.dumps` with sorted keys of

    {"format": "forgetd.retrain.v1",
     "gold_seq": int,                       # the audit.gold entry whose failed check asked for the retrain
     "samples_read": int,                   # what the retrain read
     "device": "cpu"|"cuda:0"|...}          # where the engine ran it

It is a BatchTag (no requests, no subjects) so that it travels the forget's publishing path unchanged; a
reader of batch tags sees another format and takes it for none (BatchTag.from_json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from forgetd.server.errors import StoreError
from forgetd.server.store.batch_tag import BatchTag
from forgetd.server.vocabulary import RETRAIN

__all__ = ["RETRAIN_TAG_FORMAT", "RetrainTag"]

RETRAIN_TAG_FORMAT = "forgetd.retrain.v1"


@dataclass(frozen=True)
class RetrainTag(BatchTag):
    """A full retrain's tag (module docstring). Build it with `RetrainTag.of`."""

    gold_seq: int = 0

    @classmethod
    def of(cls, gold_seq: int, device: str, samples_read: int = 0) -> RetrainTag:
        return cls((), RETRAIN, RETRAIN, (), samples_read, device, gold_seq=gold_seq)

    def to_json(self) -> str:
        tag: dict[str, Any] = {"format": RETRAIN_TAG_FORMAT, "gold_seq": self.gold_seq,
                               "samples_read": self.samples_read, "device": self.device}
        return json.dumps(tag, sort_keys=True)

    @classmethod
    def read(cls, text: str | None) -> RetrainTag | None:
        """The retrain tag in a manifest's `tag` text; None when the text is no retrain tag. StoreError when it is
        one but is damaged."""
        try:
            data = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("format") != RETRAIN_TAG_FORMAT:
            return None
        try:
            device = data.get("device")
            return cls.of(int(data["gold_seq"]), "cpu" if device is None else str(device), int(data["samples_read"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"the manifest's retrain tag is damaged ({exc!r}); the store cannot say which gold "
                             "check made its live version") from None
