"""Idempotency keys for durable workflows: a step that is replayed after a crash never pays twice.

A durable-execution engine (DBOS, Temporal, Prefect, ...) checkpoints each step's result. A step that called
the model and crashed before its checkpoint is run again on recovery; sent with the same `Idempotency-Key`,
that second call gets the stored answer instead of calling (and billing) the provider again.

    key = sluicegate.step_key(workflow_id, "summarise")
    answer = sluicegate.completion(model="smart", messages=[...], idempotency_key=key)
    # or over HTTP: headers={"Idempotency-Key": key}

See docs/workflows.md.
"""

from __future__ import annotations

import hashlib
import json

#: bumped only if the derivation changes; part of the hashed input so old and new keys never meet
_VERSION = "sluicegate-step-key/1"
_PREFIX = "step-"


def step_key(workflow_id: str, step_name: str, attempt_scope: str | int | None = None) -> str:
    """A stable idempotency key for one model call of one step of one workflow run.

    The same arguments give the same key in every process and every Python version, so a step re-run on
    recovery replays the answer of its first run. `attempt_scope` separates calls that must not share an
    answer: several calls in one step (a loop index), or a deliberate fresh attempt (`"retry-2"`). Leave it
    None for "this step, whenever it runs".

    The key is `step-` and the SHA-256 of the unambiguously encoded arguments (69 printable characters): it
    fits the gateway's 255-character limit whatever the inputs' length, distinct inputs do not collide, and
    workflow ids (which may carry customer data) never reach the gateway's store or logs.
    """
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ValueError("workflow_id must be a non-empty string")
    if not isinstance(step_name, str) or not step_name:
        raise ValueError("step_name must be a non-empty string")
    if attempt_scope is not None and (isinstance(attempt_scope, bool) or not isinstance(attempt_scope, str | int)):
        raise TypeError("attempt_scope must be a string, an int or None")
    # JSON quoting makes the encoding injective: ("a:b", "c") and ("a", "b:c") never hash the same input,
    # and the int 1 and the string "1" stay apart.
    encoded = json.dumps([_VERSION, workflow_id, step_name, attempt_scope], ensure_ascii=False, separators=(",", ":"))
    return _PREFIX + hashlib.sha256(encoded.encode("utf-8")).hexdigest()
