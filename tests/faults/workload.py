"""What the fault suite sends, decided by a seed and by the replies alone, so that a run with faults
and a fault-free run of the same profile send exactly the same messages.

Command customers (``fc…``) get rounds of commands of every type, chosen from what earlier replies
said exists; their phone numbers and emails come from small pools, so address conflicts happen on
purpose. Sync customers (``fs…``) get CRM versions of their external contacts; an external contact's
addresses are its own, so the final state depends only on each key's order, which Kafka keeps.
"""

import random
from dataclasses import dataclass, field
from typing import Any

from contracts.sync import sync_key

JsonDict = dict[str, Any]

# Relative weights of the command types in a round.
WEIGHTS = {
    "create_contact": 14,
    "update_contact": 14,
    "delete_contact": 3,
    "add_phone_number": 11,
    "update_phone_number": 7,
    "remove_phone_number": 7,
    "add_email": 8,
    "update_email": 5,
    "remove_email": 5,
    "add_tag": 8,
    "remove_tag": 5,
    "bulk_create_contacts": 4,
    "bulk_delete_contacts": 3,
}
PHONE_POOL = 40
EMAIL_POOL = 25
TAGS = ("vip", "lead", "churned", "partner", "blocked")


def command_phone(customer: int, n: int) -> str:
    return f"+1212{200 + customer:03d}{n:04d}"


def sync_phone(customer: int, external: int, variant: int) -> str:
    return f"+1312{200 + customer:03d}{external * 2 + variant % 2:04d}"


@dataclass
class CommandCustomer:
    """One tenant's script: the next round of commands, and what the replies say it now holds."""

    index: int
    seed: int
    rounds_done: int = 0
    contacts: dict[str, JsonDict] = field(default_factory=dict)
    """Active contacts by id, as the last reply showed them, in creation order."""
    handles: dict[str, str] = field(default_factory=dict)
    """contact id → the command (and bulk item) that created it: the same in every run."""
    signatures: dict[str, str] = field(default_factory=dict)
    """command id → what its reply said (ok or the error code, bulk counts)."""

    @property
    def customer_id(self) -> str:
        return f"fc{self.index:03d}"

    def next_round(self, size: int) -> list[JsonDict]:
        rng = random.Random(f"{self.seed}/{self.customer_id}/{self.rounds_done}")
        kinds, weights = zip(*WEIGHTS.items(), strict=True)
        commands = []
        for j in range(size):
            kind = rng.choices(kinds, weights)[0]
            command_id = f"{self.customer_id}-r{self.rounds_done}-{j}"
            commands.append(
                {"command_id": command_id, "customer_id": self.customer_id, **self._body(kind, rng)}
            )
        self.rounds_done += 1
        return commands

    def _body(self, kind: str, rng: random.Random) -> JsonDict:
        ids = list(self.contacts)
        if not ids and kind not in {"create_contact", "bulk_create_contacts"}:
            kind = "create_contact"
        if kind == "create_contact":
            return {"type": kind, "contact": self._new_contact(rng)}
        if kind == "bulk_create_contacts":
            items: list[JsonDict] = [self._new_contact(rng) for _ in range(rng.randint(3, 12))]
            if rng.random() < 0.3:
                items.insert(
                    rng.randrange(len(items)), {"first_name": "bad", "phone_numbers": [{"number": "12"}]}
                )
            return {"type": kind, "contacts": items}
        if kind == "bulk_delete_contacts":
            chosen = rng.sample(ids, min(len(ids), rng.randint(1, 3)))
            return {"type": kind, "contact_ids": [*chosen, f"missing-{rng.randrange(10**6)}"]}
        contact_id = rng.choice(ids)
        contact = self.contacts[contact_id]
        on = {"type": kind, "contact_id": contact_id}
        phones, emails, tags = contact["phone_numbers"], contact["emails"], contact["tag_ids"]
        if kind == "update_contact":
            return {**on, "changes": {"company": f"Co {rng.randrange(100)}", "job_title": rng.choice(TAGS)}}
        if kind == "delete_contact":
            return on
        if kind == "add_phone_number":
            number = {"number": command_phone(self.index, rng.randrange(PHONE_POOL)), "type": "mobile"}
            return {**on, "phone_number": {**number, "is_primary": rng.random() < 0.3}}
        if kind == "add_email":
            return {**on, "email": {"address": self._email(rng), "is_primary": rng.random() < 0.3}}
        if kind == "add_tag":
            return {**on, "tag_id": rng.choice(TAGS)}
        if kind == "remove_tag":
            return {**on, "tag_id": rng.choice(tags) if tags else rng.choice(TAGS)}
        entries = phones if "phone" in kind else emails
        entry_id = rng.choice(entries)["id"] if entries else f"missing-{rng.randrange(10**6)}"
        key = "phone_number_id" if "phone" in kind else "email_id"
        if kind == "update_phone_number":
            change = {"type": rng.choice(["work", "home", "mobile"]), "is_primary": rng.random() < 0.5}
            return {**on, key: entry_id, "changes": change}
        if kind == "update_email":
            return {**on, key: entry_id, "changes": {"address": self._email(rng)}}
        return {**on, key: entry_id}  # remove_phone_number, remove_email

    def _new_contact(self, rng: random.Random) -> JsonDict:
        phones = rng.sample(range(PHONE_POOL), rng.randint(0, 2))
        return {
            "first_name": f"F{rng.randrange(1000)}",
            "last_name": f"L{rng.randrange(1000)}",
            "phone_numbers": [{"number": command_phone(self.index, n), "type": "work"} for n in phones],
            "emails": [{"address": self._email(rng)}] if rng.random() < 0.5 else [],
            "tag_ids": rng.sample(TAGS, rng.randint(0, 2)),
        }

    def _email(self, rng: random.Random) -> str:
        return f"p{rng.randrange(EMAIL_POOL)}@{self.customer_id}.example.com"

    def took(self, command: JsonDict, reply: JsonDict) -> None:
        """Learn from one reply what now exists."""
        self.signatures[command["command_id"]] = signature(reply)
        if not reply.get("ok"):
            return
        kind = command["type"]
        if kind == "bulk_create_contacts":
            by_id = {c["id"]: c for c in reply.get("contacts", [])}
            for item in reply.get("items", []):
                if item.get("contact_id") in by_id:
                    self.handles[item["contact_id"]] = f"{command['command_id']}#{item['index']}"
                    self.contacts[item["contact_id"]] = by_id[item["contact_id"]]
        elif kind == "bulk_delete_contacts":
            for contact_id in set(command["contact_ids"]) - set(reply.get("not_found", [])):
                self.contacts.pop(contact_id, None)
        elif isinstance(reply.get("result"), dict):
            contact = reply["result"]
            if kind == "create_contact":
                self.handles[contact["id"]] = command["command_id"]
            if contact.get("tm_delete"):
                self.contacts.pop(contact["id"], None)
            else:
                self.contacts[contact["id"]] = contact

    def phones(self) -> list[str]:
        return [p["number_e164"] for c in self.contacts.values() for p in c["phone_numbers"]]


def signature(reply: JsonDict) -> str:
    if not reply.get("ok"):
        return str((reply.get("error") or {}).get("code"))
    if "created" in reply:
        return f"ok created={reply['created']} failed={reply['failed']}"
    if "deleted" in reply:
        return f"ok deleted={reply['deleted']} not_found={len(reply.get('not_found', []))}"
    return "ok"


@dataclass(frozen=True)
class SyncPlan:
    """Every sync message of a run, in the order sent: each external contact's versions in order,
    the external contacts interleaved; some end deleted."""

    customers: int
    externals: int
    versions: int
    seed: int

    def messages(self) -> list[tuple[bytes, JsonDict]]:
        rng = random.Random(f"{self.seed}/sync")
        keys = [(c, e) for c in range(self.customers) for e in range(self.externals)]
        out = []
        for version in range(1, self.versions + 1):
            rng.shuffle(keys)
            for c, e in keys:
                customer_id, external_id = f"fs{c:03d}", f"ext-{e}"
                base = {"customer_id": customer_id, "crm": "salesforce", "external_id": external_id}
                if version == self.versions and e % 7 == 0:
                    message = {**base, "type": "crm_contact_deleted", "crm_version": version}
                else:
                    message = {**base, "type": "crm_contact_upserted", "crm_version": version,
                               "contact": _synced(c, e, version)}  # fmt: skip
                out.append((sync_key(customer_id, external_id), message))
        return out

    def phones(self) -> list[tuple[str, str]]:
        last = self.versions
        return [
            (f"fs{c:03d}", sync_phone(c, e, last))
            for c in range(self.customers)
            for e in range(self.externals)
        ]


def _synced(customer: int, external: int, version: int) -> JsonDict:
    return {
        "first_name": f"E{external}",
        "last_name": f"v{version}",
        "company": f"CRM {customer}",
        "phone_numbers": [{"number": sync_phone(customer, external, version), "type": "work"}],
        "emails": [{"address": f"e{external}.v{version % 3}@fs{customer:03d}.example.com"}],
    }
