"""A Gmail mailbox in memory: messages, labels, threads, drafts, history, synthetic mail.

What Gmail keeps per user and the API shows: messages (RFC 5322 bytes plus labels and an
internal date), threads (the id of their first message), history records with increasing but
non-contiguous ids, a retention floor below which a startHistoryId is too old (404), and drafts.
Synthetic mail is rendered with Python's email package (policy SMTP: CRLF, RFC 2047 encoded
non-ASCII headers, RFC 2231 file names), from a per-message recipe, on first use: a 50,000
message mailbox costs its recipes only until someone reads the bodies. Everything is
deterministic for a seed: ids, dates, subjects, boundaries and Message-IDs.

This module knows nothing about HTTP, quotas or push: gmail.py is the API around it. Callers
hold Store.lock around every call (one lock for all mailboxes: simple, and fast enough for a
fake).
"""

import base64
import collections
import datetime
import email
import email.errors
import email.header
import email.policy
import email.utils
import random
import re
import threading
import time
from email.headerregistry import Address
from email.message import EmailMessage

SYSTEM_LABELS = ["INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "SENT", "DRAFT",
                 "CHAT", "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS",
                 "CATEGORY_UPDATES", "CATEGORY_FORUMS"]
# Labels a client may not add or remove (Label.type description): the system sets them.
FIXED_LABELS = {"SENT", "DRAFT", "CHAT"}
HISTORY_TYPES = ("messagesAdded", "messagesDeleted", "labelsAdded", "labelsRemoved")
RENDER_CACHE = 4096  # parsed messages kept; bounded so a big mailbox stays cheap
SENT_MS_HEADER = "X-Ainbox-Fake-Sent-Ms"

# A 1x1 PNG: the inline image of multipart/related mail.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwAD"
                       "hgGAWjR9awAAAABJRU5ErkJggg==")
PEOPLE = [("Zoë Ångström", "zoe@example.se"), ("José Núñez", "jose@example.es"),
          ("李雷", "li.lei@example.cn"), ("Ola Nordmann", "ola@example.no"),
          ("Alice Martin", "alice@example.com"), ("GitHub", "noreply@github.example"),
          ("Björk Guðmundsdóttir", "bjork@example.is"), ("Newsletter Team", "news@shop.example"),
          ("Dmitri Иванов", "dmitri@example.ru"), ("Bob Stone", "bob@example.org")]
SUBJECTS = ["Quarterly report", "Réunion à 15h", "Grüße aus München", "日本語の件名のテスト",
            "Lunch on Friday?", "Your invoice is ready", "Привет из Москвы", "Build failed on main",
            "🎉 Party this weekend", "Café meeting — agenda ✓", "Weekly digest", "Contract draft",
            "Travel plans", "Photos from the trip", "Security alert", "Re: budget"]
WORDS = ("the of and to in is you that it he was for on are as with his they at be this have "
         "from or one had by word but not what all were we when your can said there use an each "
         "which she do how their if will up other about out many then them these so some her "
         "would make like him into time has look two more write go see number no way could "
         "people my than first water been call who oil its now find long down day did get come "
         "made may part café naïve über façade smörgåsbord").split()
CATEGORIES = ["CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES",
              "CATEGORY_FORUMS"]
USER_LABELS = ["Work", "Family", "Receipts", "Projekte/Ärger"]


def b64url(data):
    """base64url with padding, as Gmail writes `raw` and `body.data`."""
    return base64.urlsafe_b64encode(data).decode()


def b64url_decode(text):
    """Either base64 alphabet, padded or not (clients differ)."""
    text = text.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def snippet_escape(text):
    # Gmail's snippets are HTML-escaped (&#39; for the apostrophe).
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


class Msg:
    """One message: labels and dates always; bytes from `raw` or rendered from `recipe`."""

    __slots__ = ("id", "thread_id", "labels", "internal_ms", "history_id", "raw", "recipe",
                 "subject", "sender", "to", "has_attachment", "message_id", "trashed_inbox", "size")

    def __init__(self, mid, thread_id, labels, internal_ms, raw=None, recipe=None):
        self.id, self.thread_id, self.labels = mid, thread_id, set(labels)
        self.internal_ms, self.raw, self.recipe = internal_ms, raw, recipe
        self.history_id = 0
        self.size = len(raw) if raw is not None else None
        self.subject = self.sender = self.to = self.message_id = ""
        self.has_attachment = False
        self.trashed_inbox = False  # INBOX was removed by trash: untrash puts it back

    def ref(self, labels=True):
        r = {"id": self.id, "threadId": self.thread_id}
        if labels:
            r["labelIds"] = sorted(self.labels)
        return r


class Mailbox:
    def __init__(self, email_addr, seed=0, history_keep=100000, history_keep_s=0):
        self.email = email_addr
        self.seed = seed
        self.rng = random.Random(f"{seed}:{email_addr}")
        self.history_id = 1000 + self.rng.randrange(1, 100000)
        self.floor = self.history_id   # a startHistoryId below this answers 404
        self.history = collections.deque()  # records, oldest first
        self.history_keep = history_keep      # records kept (0: none)
        self.history_keep_s = history_keep_s  # seconds kept (0: no time limit)
        self.messages = {}   # id -> Msg
        self.threads = {}    # thread id -> [message ids] in arrival order
        self.by_msgid = {}   # Message-ID header -> thread id, to thread replies
        self.user_labels = {}  # id -> name
        self.drafts = {}     # draft id -> message id
        self.next_id = (0x18c0 << 48) + self.rng.randrange(1 << 40)
        self.next_draft = self.rng.randrange(10 ** 18, 10 ** 19)
        self.generated = 0   # recipes made so far, for the next synthetic message
        self.recent = collections.deque(maxlen=20)  # threads a synthetic reply may join
        self.on_change = None  # callable(mailbox, history_id, labels touched)
        for name in USER_LABELS:
            self.create_label(name)

    # ------------------------------------------------------------- ids and history

    def new_id(self):
        self.next_id += self.rng.randrange(1, 1 << 20)
        return "%016x" % self.next_id

    def bump(self):
        # Increasing, not contiguous (provider-apis.md §1.2): a random gap per change.
        self.history_id += self.rng.randrange(1, 51)
        return self.history_id

    def record(self, kind, msg, label_ids=None):
        hid = self.bump()
        msg.history_id = hid
        rec = {"id": hid, "type": kind, "message": msg.ref(), "t": time.time()}
        if label_ids is not None:
            rec["labelIds"] = sorted(label_ids)
        self.history.append(rec)
        self.trim()
        if self.on_change:
            self.on_change(self, hid, set(msg.labels) | set(label_ids or ()))
        return hid

    def trim(self):
        cutoff = time.time() - self.history_keep_s if self.history_keep_s else None
        while self.history and (len(self.history) > self.history_keep or
                                (cutoff is not None and self.history[0]["t"] < cutoff)):
            self.floor = self.history.popleft()["id"]

    def expire_history(self):
        """Forget every record: any older startHistoryId now answers 404."""
        self.history.clear()
        self.floor = self.history_id

    def history_since(self, start, types, label_id):
        """Records after `start` that match; None if start is older than the floor."""
        if start < self.floor or start <= 0:
            return None
        self.trim()
        if start < self.floor:
            return None
        out = []
        for rec in self.history:
            if rec["id"] <= start:
                continue
            if types and rec["type"] not in types:
                continue
            if label_id and label_id not in rec["message"]["labelIds"] and \
                    label_id not in rec.get("labelIds", ()):
                continue
            out.append(rec)
        return out

    # ------------------------------------------------------------- labels

    def create_label(self, name):
        lid = "Label_%d" % (len(self.user_labels) + 1)
        while lid in self.user_labels:
            lid += "0"
        self.user_labels[lid] = name
        return lid

    def label_ok(self, lid):
        return lid in SYSTEM_LABELS or lid in self.user_labels

    def label_json(self, lid, counts=False):
        if lid in SYSTEM_LABELS:
            out = {"id": lid, "name": lid, "type": "system"}
            if lid in ("SPAM", "TRASH"):
                out.update(messageListVisibility="hide", labelListVisibility="labelHide")
        else:
            out = {"id": lid, "name": self.user_labels[lid], "type": "user",
                   "messageListVisibility": "show", "labelListVisibility": "labelShow"}
        if counts:
            total = unread = 0
            threads, unread_threads = set(), set()
            for m in self.messages.values():
                if lid in m.labels:
                    total += 1
                    threads.add(m.thread_id)
                    if "UNREAD" in m.labels:
                        unread += 1
                        unread_threads.add(m.thread_id)
            out.update(messagesTotal=total, messagesUnread=unread, threadsTotal=len(threads),
                       threadsUnread=len(unread_threads))
        return out

    # ------------------------------------------------------------- changes

    def add(self, msg, history=True):
        """Stores msg (its thread chosen already) and records messagesAdded."""
        self.messages[msg.id] = msg
        if msg.thread_id not in self.threads:
            self.recent.append(msg.thread_id)
        self.threads.setdefault(msg.thread_id, []).append(msg.id)
        if msg.message_id:
            self.by_msgid[msg.message_id] = msg.thread_id
        if history:
            self.record("messagesAdded", msg)
        else:
            msg.history_id = self.history_id
        return msg

    def change_labels(self, msg, add=(), remove=()):
        """Applies a label change; one history record per direction that changed something."""
        added = [lid for lid in add if lid not in msg.labels]
        removed = [lid for lid in remove if lid in msg.labels and lid not in add]
        msg.labels.update(added)
        msg.labels.difference_update(removed)
        if added:
            self.record("labelsAdded", msg, added)
        if removed:
            self.record("labelsRemoved", msg, removed)
        return bool(added or removed)

    def trash(self, msg):
        if "TRASH" in msg.labels:
            return
        msg.trashed_inbox = "INBOX" in msg.labels
        self.change_labels(msg, ["TRASH"], ["INBOX"])

    def untrash(self, msg):
        if "TRASH" not in msg.labels:
            return
        self.change_labels(msg, ["INBOX"] if msg.trashed_inbox else [], ["TRASH"])
        msg.trashed_inbox = False

    def delete(self, msg):
        del self.messages[msg.id]
        ids = self.threads.get(msg.thread_id, [])
        if msg.id in ids:
            ids.remove(msg.id)
        if not ids:
            self.threads.pop(msg.thread_id, None)
        for did, mid in list(self.drafts.items()):
            if mid == msg.id:
                del self.drafts[did]
        self.record("messagesDeleted", msg)

    def thread_for(self, parsed, thread_id=None):
        """The thread a new message joins: the given one if it exists, else the thread of a
        message it answers (In-Reply-To / References), else a new one (None)."""
        if thread_id and thread_id in self.threads:
            return thread_id
        refs = (str(parsed.get("In-Reply-To", "")) + " " + str(parsed.get("References", "")))
        for ref in re.findall(r"<[^>]+>", refs):
            if ref in self.by_msgid and self.by_msgid[ref] in self.threads:
                return self.by_msgid[ref]
        return None

    def add_raw(self, raw, labels, thread_id=None, internal_ms=None, history=True):
        """A message from its bytes (send, drafts, delivery). Returns the Msg."""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        mid = self.new_id()
        tid = self.thread_for(parsed, thread_id) or mid
        msg = Msg(mid, tid, labels, internal_ms or int(time.time() * 1000), raw=raw)
        describe(msg, parsed)
        return self.add(msg, history)

    # ------------------------------------------------------------- synthetic mail

    def synthesize(self, count, days=365, now_ms=None):
        """count synthetic messages spread over the last `days` days, oldest first, without
        history (they were there before the client came)."""
        now_ms = now_ms or int(time.time() * 1000)
        span = days * 86400000
        for i in range(count):
            when = now_ms - span + (span * (i + 1)) // max(count, 1) - self.rng.randrange(60000)
            self.add_recipe(self.recipe(when), history=False)

    def recipe(self, when_ms, extra_headers=None, subject=None, sender=None):
        """A deterministic description of the next synthetic message."""
        n = self.generated
        self.generated += 1
        rng = random.Random(f"{self.seed}:{self.email}:{n}")
        name, addr = sender or rng.choice(PEOPLE)
        outgoing = rng.random() < 0.08
        kind = rng.choice(["plain", "alt", "alt", "related", "mixed", "mixed"])
        threads = list(self.recent)
        reply_to = rng.choice(threads) if threads and rng.random() < 0.25 else None
        return {"n": n, "when": when_ms, "kind": kind, "name": name, "addr": addr,
                "outgoing": outgoing, "subject": subject or rng.choice(SUBJECTS),
                "reply_to": reply_to, "words": rng.randrange(20, 200),
                "labels": self.pick_labels(rng, outgoing),
                "headers": dict(extra_headers or {})}

    def pick_labels(self, rng, outgoing):
        if outgoing:
            return {"SENT"}
        r = rng.random()
        labels = {"INBOX"} if r < 0.85 else ({"SPAM"} if r < 0.9 else ({"TRASH"} if r < 0.93
                                                                         else set()))
        if rng.random() < 0.3:
            labels.add("UNREAD")
        if rng.random() < 0.08:
            labels.add("STARRED")
        if rng.random() < 0.2:
            labels.add("IMPORTANT")
        labels.add(rng.choice(CATEGORIES))
        if rng.random() < 0.1:
            labels.add(rng.choice(sorted(self.user_labels)))
        return labels

    def add_recipe(self, recipe, history=True, labels=None):
        mid = self.new_id()
        tid = recipe["reply_to"] if recipe["reply_to"] in self.threads else mid
        if tid != mid:  # a reply: it answers the thread's first message
            first = self.messages.get(self.threads[tid][0])
            recipe["in_reply_to"] = first.message_id if first else None
            if not recipe["subject"].startswith("Re:"):
                recipe["subject"] = "Re: " + (first.subject if first else recipe["subject"])
        recipe["message_id"] = f"<{mid}.{self.seed}@fake.ainbox.test>"
        msg = Msg(mid, tid, labels if labels is not None else recipe["labels"], recipe["when"],
                  recipe=recipe)
        msg.subject, msg.message_id = recipe["subject"], recipe["message_id"]
        me = self.email
        msg.sender = f'{recipe["name"]} <{recipe["addr"]}>' if not recipe["outgoing"] else me
        msg.to = me if not recipe["outgoing"] else recipe["addr"]
        msg.has_attachment = recipe["kind"] in ("mixed", "related")
        return self.add(msg, history)

    def deliver(self, subject=None, sender=None, headers=None, labels=None):
        """New mail arriving now (generator, control API): rendered at once so its headers
        (the sent-time stamp) are in the bytes. Returns the Msg."""
        now = int(time.time() * 1000)
        headers = dict(headers or {})
        headers.setdefault(SENT_MS_HEADER, str(now))
        recipe = self.recipe(now, headers, subject, sender)
        recipe["outgoing"] = False
        msg = self.add_recipe(recipe, history=False,
                              labels=set(labels or ["INBOX", "UNREAD", "CATEGORY_PERSONAL"]))
        msg.raw = render(recipe, self.email)
        msg.size = len(msg.raw)
        msg.recipe = None
        self.record("messagesAdded", msg)
        return msg

    # ------------------------------------------------------------- reading

    def raw_of(self, msg):
        return msg.raw if msg.raw is not None else render(msg.recipe, self.email)


def describe(msg, parsed):
    """Fills the fields search and threading use from a parsed message."""
    msg.subject = str(parsed.get("Subject", ""))
    msg.sender = str(parsed.get("From", ""))
    msg.to = ", ".join(str(parsed.get(h, "")) for h in ("To", "Cc") if parsed.get(h))
    msg.message_id = str(parsed.get("Message-ID", "")).strip()
    msg.has_attachment = any(p.get_filename() for p in parsed.walk() if not p.is_multipart())


def _text(recipe):
    rng = random.Random(f"body:{recipe['n']}:{recipe['message_id']}")
    words = [rng.choice(WORDS) for _ in range(recipe["words"])]
    lines, line = [], []
    for w in words:
        line.append(w)
        if len(line) >= 12:
            lines.append(" ".join(line).capitalize() + ".")
            line = []
    if line:
        lines.append(" ".join(line).capitalize() + ".")
    return "Hello,\n\n" + "\n".join(lines) + "\n\n-- \n" + recipe["name"] + "\n"


def render(recipe, me):
    """The RFC 5322 bytes of a recipe: the same bytes every time."""
    m = EmailMessage(policy=email.policy.SMTP)
    sender = Address(recipe["name"], addr_spec=recipe["addr"])
    mine = Address(me.split("@")[0].title(), addr_spec=me)
    m["From"], m["To"] = (mine, sender) if recipe["outgoing"] else (sender, mine)
    m["Subject"] = recipe["subject"]
    m["Date"] = email.utils.format_datetime(
        datetime.datetime.fromtimestamp(recipe["when"] / 1000, datetime.timezone.utc))
    m["Message-ID"] = recipe["message_id"]
    if recipe.get("in_reply_to"):
        m["In-Reply-To"] = recipe["in_reply_to"]
        m["References"] = recipe["in_reply_to"]
    for k, v in recipe["headers"].items():
        m[k] = v
    text = _text(recipe)
    m.set_content(text, cte="quoted-printable")
    kind = recipe["kind"]
    if kind in ("alt", "related", "mixed"):
        paras = "".join(f"<p>{p}</p>" for p in text.split("\n") if p)
        img = '<img src="cid:logo@fake.ainbox.test" alt="logo">' if kind == "related" else ""
        m.add_alternative(f"<html><body>{img}{paras}</body></html>", subtype="html",
                          cte="quoted-printable")
        if kind == "related":
            m.get_payload()[1].add_related(PNG, "image", "png", cid="<logo@fake.ainbox.test>",
                                           filename="logo.png", disposition="inline")
    if kind == "mixed":
        m.add_attachment(b"%PDF-1.4\n% fake invoice\n" + bytes(range(256)), "application", "pdf",
                         filename="invoice.pdf")
        m.add_attachment("naïve;data\n1;2\n".encode(), "text", "csv", filename="résumé.csv")
    for i, part in enumerate(p for p in m.walk() if p.is_multipart()):
        part.set_boundary(f"=_ainbox_{recipe['n']}_{i}")
    return m.as_bytes()


class Parsed:
    """A message's parse and the views of it the API returns, cached per message. The compat32
    parser, five times faster than policy.default's header objects; headers_of decodes."""

    def __init__(self, raw):
        self.raw = raw
        self.msg = email.message_from_bytes(raw)
        self.parts = {}  # part id -> leaf part (attachments)
        self.snippet = ""

    def payload(self, mid):
        tree = self._part(self.msg, "", mid)
        if not self.snippet:
            self.snippet = snippet_escape(self._first_text()[:160].rstrip())
        return tree

    def _first_text(self):
        for part in self.msg.walk():
            if part.get_content_type() == "text/plain" and not part.get_filename():
                data = part.get_payload(decode=True) or b""
                try:
                    text = data.decode(part.get_content_charset() or "us-ascii", "replace")
                except LookupError:
                    text = data.decode("utf-8", "replace")
                return " ".join(text.split())
        return ""

    def _part(self, part, pid, mid):
        out = {"partId": pid, "mimeType": part.get_content_type(),
               "filename": part.get_filename() or "",
               "headers": headers_of(part)}
        if part.is_multipart():
            out["body"] = {"size": 0}
            out["parts"] = [self._part(p, f"{pid}.{i}" if pid else str(i), mid)
                            for i, p in enumerate(part.get_payload())]
            return out
        data = part.get_payload(decode=True) or b""
        if out["filename"]:
            self.parts[pid] = data
            out["body"] = {"attachmentId": attachment_id(mid, pid), "size": len(data)}
        else:
            out["body"] = {"size": len(data), "data": b64url(data)} if data else {"size": 0}
        return out


def headers_of(part):
    """[{name, value}] with RFC 2047 words decoded and folds undone, as Gmail shows them."""
    out = []
    for k, v in part.items():
        value = str(v)
        if "=?" in value:
            try:
                value = str(email.header.make_header(email.header.decode_header(value)))
            except (ValueError, LookupError, email.errors.HeaderParseError):
                pass  # a broken encoded word: show it as sent
        out.append({"name": k, "value": re.sub(r"\r?\n[ \t]", " ", value)})
    return out


def attachment_id(mid, pid):
    return "ANGjdJ" + base64.urlsafe_b64encode(f"{mid}/{pid}".encode()).decode().rstrip("=")


def parse_attachment_id(aid):
    if not aid.startswith("ANGjdJ"):
        return None
    try:
        mid, _, pid = b64url_decode(aid[6:]).decode().partition("/")
    except (ValueError, UnicodeDecodeError):
        return None
    return mid, pid


class Store:
    """Every mailbox, the one lock, and a bounded cache of parsed messages."""

    def __init__(self):
        self.lock = threading.RLock()
        self.boxes = {}
        self.cache = collections.OrderedDict()  # (email, id) -> Parsed

    def parsed(self, box, msg):
        key = (box.email, msg.id)
        p = self.cache.get(key)
        if p is None:
            p = Parsed(box.raw_of(msg))
            p.payload(msg.id)
            self.cache[key] = p
            while len(self.cache) > RENDER_CACHE:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(key)
        return p

    def forget(self, box, msg):
        self.cache.pop((box.email, msg.id), None)


# ----------------------------------------------------------------- search (q)

TOKEN = re.compile(r'(-?)(\w+):("[^"]*"|\S+)|(-?)("[^"]*"|\S+)')


def _day_ms(text):
    try:
        y, m, d = (int(x) for x in re.split(r"[/-]", text))
        return int(datetime.datetime(y, m, d, tzinfo=datetime.timezone.utc).timestamp() * 1000)
    except (ValueError, TypeError):
        raise ValueError(text)


def compile_query(q, label_names=None):
    """A predicate over Msg for Gmail's q subset (provider-apis.md §1.1); ValueError on a
    malformed one. An unknown `in:` place matches nothing, as Gmail answers no hits."""
    preds = []
    for neg, op, arg, neg2, word in TOKEN.findall(q or ""):
        negate = bool(neg or neg2)
        if op:
            arg = arg.strip('"').lower()
            pred = _operator(op.lower(), arg, label_names or {})
        else:
            w = word.strip('"').lower()
            pred = (lambda m, w=w: w in m.subject.lower() or w in m.sender.lower())
        preds.append((lambda m, p=pred: not p(m)) if negate else pred)
    return lambda m: all(p(m) for p in preds)


def _operator(op, arg, label_names):
    label = {"inbox": "INBOX", "trash": "TRASH", "spam": "SPAM", "sent": "SENT",
             "drafts": "DRAFT", "draft": "DRAFT", "starred": "STARRED", "important": "IMPORTANT",
             "unread": "UNREAD"}
    if op == "is":
        if arg == "read":
            return lambda m: "UNREAD" not in m.labels
        if arg in label:
            return lambda m, lid=label[arg]: lid in m.labels
        raise ValueError(f"is:{arg}")
    if op == "in":
        if arg == "anywhere":
            return lambda m: True
        if arg in label:
            return lambda m, lid=label[arg]: lid in m.labels
        return lambda m: False
    if op == "label":
        lid = label_names.get(arg.replace("-", " "), label_names.get(arg, arg.upper()))
        return lambda m: lid in m.labels
    if op == "from":
        return lambda m: arg in m.sender.lower()
    if op == "to":
        return lambda m: arg in m.to.lower()
    if op == "subject":
        return lambda m: arg in m.subject.lower()
    if op == "has" and arg == "attachment":
        return lambda m: m.has_attachment
    if op in ("after", "before"):
        t = _day_ms(arg)
        return (lambda m: m.internal_ms >= t) if op == "after" else (lambda m: m.internal_ms < t)
    if op in ("newer_than", "older_than"):
        mm = re.fullmatch(r"(\d+)([dmy])", arg)
        if not mm:
            raise ValueError(arg)
        t = int(time.time() * 1000) - int(mm.group(1)) * {"d": 1, "m": 31, "y": 365}[
            mm.group(2)] * 86400000
        return (lambda m: m.internal_ms >= t) if op == "newer_than" else \
            (lambda m: m.internal_ms < t)
    raise ValueError(f"{op}:{arg}")
