"""The store side of operations: a canonical dump, the consistency audit and its safe repair,
and the current states that a re-emit publishes."""

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from service.adapters.mongo import (
    ADDRESSES,
    COMMAND_LOG,
    CONTACT_LIST,
    CONTACTS,
    SYNC_STATE,
    every_contact,
)
from service.adapters.mongo.command_log import MongoCommandLog
from service.domain.model import Address, Contact
from service.service_layer.ports import FREE

Database = AsyncDatabase[dict[str, Any]]
DUMPED = (CONTACTS, ADDRESSES, CONTACT_LIST, COMMAND_LOG, SYNC_STATE)
"""What the service keeps: a replay that changes nothing leaves all of it as it was."""


async def canonical_dump(db: Database) -> AsyncIterator[str]:
    """Every document the service keeps, one JSON line each: by collection, then ``_id``, keys sorted."""
    for name in DUMPED:
        docs = [doc async for doc in db[name].find({})]
        for doc in sorted(docs, key=lambda d: str(d["_id"])):
            yield json.dumps({"collection": name, **doc}, sort_keys=True, default=_plain, ensure_ascii=False)


def _plain(value: Any) -> str:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)


@dataclass(frozen=True)
class Finding:
    kind: str
    customer_id: str
    detail: dict[str, Any]
    repairable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "customer_id": self.customer_id,
            **self.detail,
            "repairable": self.repairable,
        }


@dataclass
class _Claim:
    id: str
    contact_id: str
    claimed_at: datetime


@dataclass
class Audit:
    """What the store says, gathered in one pass over contacts and claims."""

    versions: dict[str, tuple[str, int]] = field(default_factory=dict)
    """contact id → (customer, version)."""
    active: dict[str, Contact] = field(default_factory=dict)
    holders: dict[tuple[str, Address], list[str]] = field(default_factory=lambda: defaultdict(list))
    claims: dict[tuple[str, Address], _Claim] = field(default_factory=dict)

    @classmethod
    async def read(cls, db: Database) -> "Audit":
        audit = cls()
        async for contact in every_contact(db):
            audit.versions[contact.id] = (contact.customer_id, contact.version)
            if not contact.is_deleted:
                audit.active[contact.id] = contact
                for address in contact.addresses():
                    audit.holders[(contact.customer_id, address)].append(contact.id)
        async for doc in db[ADDRESSES].find({}):
            where = (doc["customer_id"], Address(doc["kind"], doc["value"]))
            audit.claims[where] = _Claim(doc["_id"], doc["contact_id"], doc["claimed_at"])
        return audit

    def store_findings(self, *, grace: timedelta, now: datetime) -> list[Finding]:
        found: list[Finding] = []
        for (customer, address), holders in sorted(self.holders.items(), key=_by_address):
            where = {"address": f"{address.kind}:{address.value}"}
            if len(holders) > 1:
                found.append(
                    Finding("address_on_two_contacts", customer, {**where, "contacts": sorted(holders)})
                )
            claim = self.claims.get((customer, address))
            if claim is None:
                found.append(Finding("claim_missing", customer, {**where, "contact": holders[0]}))
            elif claim.contact_id not in holders:
                found.append(
                    Finding(
                        "claim_names_other",
                        customer,
                        {**where, "contact": holders[0], "claim": claim.contact_id},
                    )
                )
        for (customer, address), claim in sorted(self.claims.items(), key=_by_address):
            holder = self.active.get(claim.contact_id)
            stale = claim.claimed_at < now - grace
            if claim.contact_id != FREE and stale and (holder is None or not holder.holds(address)):
                detail = {
                    "address": f"{address.kind}:{address.value}",
                    "claim": claim.contact_id,
                    "id": claim.id,
                }
                found.append(Finding("orphan_claim", customer, detail, repairable=True))
        return found

    def event_findings(self, newest: dict[str, int], *, complete: bool) -> list[Finding]:
        """``newest``: the highest version per contact on the events topic; ``complete``: the topic
        still holds every event ever published (nothing removed by retention)."""
        found: list[Finding] = []
        for contact_id, (customer, version) in sorted(self.versions.items()):
            seen = newest.get(contact_id)
            if seen is None and complete:
                found.append(Finding("event_missing", customer, {"contact": contact_id, "version": version}))
            elif seen is not None and seen != version:
                detail = {"contact": contact_id, "version": version, "event_version": seen}
                found.append(
                    Finding("event_behind" if seen < version else "store_behind_events", customer, detail)
                )
        return found


def _by_address(item: tuple[tuple[str, Address], Any]) -> tuple[str, str, str]:
    (customer, address), _ = item
    return customer, address.kind, address.value


async def repair(db: Database, findings: Iterable[Finding]) -> list[Finding]:
    """Release the orphan claims (external ids' stay, free to take, as every release keeps them).
    Each write is filtered on the claim's holder: a claim taken meanwhile is left alone."""
    claims = db[ADDRESSES]
    done = []
    for finding in findings:
        if finding.kind != "orphan_claim":
            continue
        match = {"_id": finding.detail["id"], "contact_id": finding.detail["claim"]}
        if finding.detail["address"].startswith("external:"):
            result = await claims.update_one(match, {"$set": {"contact_id": FREE}})
            released = result.modified_count
        else:
            released = (await claims.delete_one(match)).deleted_count
        if released:
            done.append(finding)
    return done


async def log_size(db: Database, *, retention: timedelta) -> dict[str, Any]:
    size = await MongoCommandLog(db).size()
    age = None if size.oldest is None else (datetime.now(UTC) - size.oldest).total_seconds()
    return {
        "entries": size.entries,
        "oldest": None if size.oldest is None else size.oldest.isoformat(),
        "oldest_age_hours": None if age is None else round(age / 3600, 1),
        "retention_days": retention.total_seconds() / 86400,
    }


async def prune_log(db: Database, *, retention: timedelta, dry_run: bool) -> dict[str, Any]:
    before = datetime.now(UTC) - retention
    older = await db[COMMAND_LOG].count_documents({"tm_create": {"$lt": before}})
    gone = 0 if dry_run else await MongoCommandLog(db).prune(before=before)
    return {"dry_run": dry_run, "before": before.isoformat(), "older": older, "pruned": gone}
