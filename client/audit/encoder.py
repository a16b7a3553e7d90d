"""The feature encoder, part of the genesis check: the artifact that turns raw records into the model's features.

The daemon encodes every raw record it is sent with the live store's encoder.json (fitted at training, never
refitted), so a tampered encoder changes answers without moving any parameter digest. The genesis event
commits its SHA-256 (`engine.artifacts.encoder`); the live store's copy and the base vault's must both have
it, and it must describe the model genesis describes: the format this auditor reads, and as many features
as the model takes. Read with the auditor's own code (JSON, no server import), as every other check is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgetd.client.audit.report import Findings, sha256_or_missing

__all__ = ["ENCODER_FILE", "check_encoder", "committed_digest"]

ENCODER_FILE = "encoder.json"
_FORMAT = "forgetd.encoder.v1"


def committed_digest(engine: Any) -> str | None:
    """The encoder digest a genesis engine record commits; None when it commits none (or is malformed)."""
    artifacts = engine.get("artifacts") if isinstance(engine, Mapping) else None
    digest = artifacts.get("encoder") if isinstance(artifacts, Mapping) else None
    return digest if isinstance(digest, str) else None


def check_encoder(root: Path, vault: Path, engine: Any, c: Findings) -> None:
    """Findings (at the genesis seq, 1) for an encoder file that is not the one genesis committed."""
    want = committed_digest(engine)
    if want is None:
        c.notices.append("genesis commits no feature encoder (a store trained before forgetd kept one): the "
                         "encoding of raw records was not checked")
        return
    copies = (("the live store's", root / ENCODER_FILE), (f"the vault audit/{vault.name}'s", vault / ENCODER_FILE))
    for where, path in copies:
        have = sha256_or_missing(path)
        if have != want:
            c.add(1, f"{where} feature encoder ({ENCODER_FILE}) is not the one genesis committed: raw records "
                     "would be encoded otherwise than the model was trained", want, have)
        elif path.parent == root:
            _check_content(path, engine, c)


def _check_content(path: Path, engine: Mapping[str, Any], c: Findings) -> None:
    """The committed file is an encoder of the model's width (so genesis committed a usable one)."""
    try:
        doc = json.loads(path.read_bytes())
        columns, width = doc["columns"], doc["num_features"]
        if doc.get("format") != _FORMAT or not isinstance(columns, list):
            raise ValueError(f"format {doc.get('format')!r}, expected {_FORMAT!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        c.add(1, f"the feature encoder ({ENCODER_FILE}) genesis committed is unreadable: {exc}")
        return
    if width != engine.get("num_features"):
        c.add(1, f"the feature encoder ({ENCODER_FILE}) makes another number of features than the model takes",
              engine.get("num_features"), width)
