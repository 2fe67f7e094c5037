"""Payload keys in use (issue 14): which key ids the histories of open cases were encrypted with.

A rotated-out key is still needed while any open case's history holds a payload encrypted with it (a
worker replays that history whenever the case leaves its cache). :func:`key_ids_in_use` reads the
histories of every running case workflow (raw events: nothing is decrypted) and counts, per key id,
the open cases that need it; `intake keys status` prints it and the worker refuses to start while a
needed key is missing from INTAKE_PAYLOAD_KEYS (:func:`missing_keys`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from codec import ENCODING, KEY_ID
from domain.constants import WORKFLOW_TYPE

# Histories read at once.
CONCURRENCY = 16


def _payloads(msg: Message) -> Iterator[Payload]:
    if isinstance(msg, Payload):
        yield msg
        return
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.is_repeated:
            if field.message_type.GetOptions().map_entry:
                for v in value.values():
                    if isinstance(v, Message):
                        yield from _payloads(v)
            else:
                for v in value:
                    yield from _payloads(v)
        else:
            yield from _payloads(value)


def key_ids_in(events: Iterable[Message]) -> set[str]:
    """The key ids of the encrypted payloads in these history events (nothing is decrypted)."""
    return {p.metadata.get(KEY_ID, b"").decode() for event in events for p in _payloads(event)
            if p.metadata.get("encoding") == ENCODING}


async def _keys_of(client: Client, workflow_id: str, run_id: str | None) -> set[str]:
    return key_ids_in([e async for e in client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history_events()])


async def key_ids_in_use(client: Client, *, workflow_type: str = WORKFLOW_TYPE) -> dict[str, list[str]]:
    """Key id -> the ids of the open case workflows whose current run's history holds a payload of it."""
    query = f'WorkflowType = "{workflow_type}" AND ExecutionStatus = "Running"'
    runs = [(w.id, w.run_id) async for w in client.list_workflows(query)]
    gate = asyncio.Semaphore(CONCURRENCY)
    out: dict[str, list[str]] = {}

    async def one(wf_id: str, run_id: str | None) -> None:
        async with gate:
            for kid in await _keys_of(client, wf_id, run_id):
                out.setdefault(kid, []).append(wf_id)

    await asyncio.gather(*(one(w, r) for w, r in runs))
    return {k: sorted(v) for k, v in sorted(out.items())}


def missing_keys(in_use: dict[str, list[str]], configured: list[str]) -> dict[str, list[str]]:
    """The needed key ids that the configured key ring lacks, with the cases that need them."""
    return {k: v for k, v in in_use.items() if k not in configured}


class MissingPayloadKey(RuntimeError):
    """An open case needs a payload key the configuration lacks: a worker would fail to replay it."""


async def require_payload_keys(client: Client, configured: list[str]) -> dict[str, list[str]]:
    """The keys in use; MissingPayloadKey when an open case needs one that is not configured."""
    in_use = await key_ids_in_use(client)
    missing = missing_keys(in_use, configured)
    if missing:
        detail = "; ".join(f"{k}: {len(v)} open case(s), e.g. {', '.join(v[:3])}" for k, v in missing.items())
        raise MissingPayloadKey(
            f"payload key(s) missing from INTAKE_PAYLOAD_KEYS that open cases need ({detail}); add them back"
            " (decrypt-only) until those cases close"
        )
    return in_use
