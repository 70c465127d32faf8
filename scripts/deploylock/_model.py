"""Value types, defaults and validation of the deploy lock."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import re
import secrets
import socket
import subprocess
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from ._errors import InvalidLockConfig

#: A lease not renewed for this long is expired and may be taken over.
DEFAULT_TTL = timedelta(minutes=10)
#: The smallest TTL the library accepts. The CLI asks for at least ``CLI_MIN_TTL``: with a
#: heartbeat every TTL/3, shorter leases leave too little slack for a slow network.
MIN_TTL = timedelta(seconds=1)
CLI_MIN_TTL = timedelta(seconds=10)
#: Heartbeat period as a fraction of the TTL: two renewals may fail before the lease expires.
HEARTBEAT_FRACTION = 3
#: Safe time (the DynamoDB lock client's ``safeTimeWithoutHeartbeat``): the holder counts its
#: lease as certainly valid until the *send* time of its last confirmed renewal + TTL - this
#: margin, by its own clock. The margin absorbs clock-rate differences between this machine
#: and Firestore (NTP slews at most 500 ppm, 0.3 s over 10 min), a late wake-up of the
#: watchdog on a loaded machine and a SIGKILL taking effect: the larger of the minimum and a
#: fraction of the TTL.
SAFETY_MARGIN_MIN = timedelta(milliseconds=500)
SAFETY_MARGIN_FRACTION = 0.05
#: A holder also reads its lease this often between renewals, so a force-release (which
#: revokes the lease) reaches it within seconds, not at the next renewal (TTL/3).
REVOCATION_POLL = timedelta(seconds=5)
#: After SIGINT, the command gets this long to exit before SIGKILL; never more than
#: :func:`max_grace` allows, since the grace is spent *inside* the lease.
DEFAULT_GRACE = timedelta(seconds=10)
#: Where a holder's secret is read from by ``deploy-lock renew``/``release``.
HOLDER_SECRET_ENV = "DEPLOY_LOCK_HOLDER_SECRET"
#: Bytes of randomness in a holder secret (``secrets.token_urlsafe``).
_SECRET_BYTES = 32
#: The Firestore database holding the lock (and the deployment records): created by the
#: bootstrap program (infra/bootstrap), not the platform's own ``(default)`` database, since a
#: lock cannot live in the stack it protects. Every CLI reads this one default; the
#: ``DEPLOY_LOCK_DATABASE`` environment variable (or ``--database``) overrides it.
DEFAULT_DATABASE = "deploy-lock"
DATABASE_ENV = "DEPLOY_LOCK_DATABASE"
#: Firestore collection holding one lock document per stack (history in its ``events``).
DEFAULT_COLLECTION = "deploy_locks"
EVENTS_SUBCOLLECTION = "events"
#: Per-attempt RPC timeout and total retry budget for every Firestore call the lock makes: a
#: client with the library defaults hung 49 s on a dead emulator.
RPC_TIMEOUT = timedelta(seconds=3)
RETRY_DEADLINE = timedelta(seconds=6)
#: Waiting for a held lock: exponential backoff with full jitter between these bounds.
WAIT_BACKOFF_INITIAL = timedelta(milliseconds=200)
WAIT_BACKOFF_MAX = timedelta(seconds=5)
#: Recorded as the holder's command, reason, ... at most this long (Firestore fields are cheap
#: but status output is not).
_MAX_TEXT = 500

STACK_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def validate_stack(stack: str) -> str:
    """Return ``stack`` if it is a valid stack name, else raise :class:`InvalidLockConfig`."""
    if not isinstance(stack, str) or not STACK_NAME_RE.fullmatch(stack):
        raise InvalidLockConfig(
            f"invalid stack name {stack!r}: use 1-63 characters, lowercase letters, digits, "
            "'-' or '_', starting with a letter (for example 'prod' or 'staging')"
        )
    return stack


def validate_ttl(ttl: timedelta | float | int, *, minimum: timedelta = MIN_TTL) -> timedelta:
    """Return ``ttl`` as a timedelta if it is at least ``minimum``, else raise."""
    if isinstance(ttl, bool) or not isinstance(ttl, (timedelta, int, float)):
        raise InvalidLockConfig(f"TTL must be a timedelta or seconds, not {ttl!r}")
    td = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    if td < minimum:
        raise InvalidLockConfig(
            f"TTL must be at least {minimum.total_seconds():g} s, got {td.total_seconds():g} s"
        )
    return td


def safety_margin(ttl: timedelta) -> timedelta:
    """The margin subtracted from the TTL to get a lease's safe time (see
    :data:`SAFETY_MARGIN_MIN`)."""
    return max(SAFETY_MARGIN_MIN, ttl * SAFETY_MARGIN_FRACTION)


def max_grace(ttl: timedelta) -> timedelta:
    """The longest grace period a lease of ``ttl`` can hold inside it.

    The command is told to stop (SIGINT) at safe time - grace and killed at the safe time. The
    stop must not begin before the next renewal (sent TTL/3 after the last) has had time to
    land and push the safe time out: it may begin from TTL/2 after the last confirmed renewal,
    so the grace is at most TTL/2 - margin.
    """
    return max(timedelta(0), ttl / 2 - safety_margin(ttl))


def default_grace(ttl: timedelta) -> timedelta:
    """:data:`DEFAULT_GRACE`, or less when the TTL cannot hold it."""
    return min(DEFAULT_GRACE, max_grace(ttl))


def validate_grace(grace: timedelta | float | int | None, ttl: timedelta) -> timedelta:
    """``grace`` as a timedelta (None: :func:`default_grace`), or raise
    :class:`InvalidLockConfig` when it is negative or larger than the TTL allows."""
    if grace is None:
        return default_grace(ttl)
    if isinstance(grace, bool) or not isinstance(grace, (timedelta, int, float)):
        raise InvalidLockConfig(f"grace must be a timedelta or seconds, not {grace!r}")
    td = grace if isinstance(grace, timedelta) else timedelta(seconds=grace)
    if not td >= timedelta(0):
        raise InvalidLockConfig(f"grace must be zero or positive, got {td.total_seconds():g} s")
    limit = max_grace(ttl)
    if td > limit:
        raise InvalidLockConfig(
            f"grace {td.total_seconds():g} s does not fit in a {ttl.total_seconds():g} s lease: "
            f"the command must have exited before the lease can expire, so the grace is at "
            f"most TTL/2 - safety margin = {limit.total_seconds():g} s; lower --grace or raise "
            "--ttl"
        )
    return td


def new_holder_secret() -> str:
    """A fresh random holder secret: proof of holding a lease, known only to its acquirer."""
    return secrets.token_urlsafe(_SECRET_BYTES)


def holder_digest(secret: str) -> str:
    """What Firestore stores of a holder secret: its SHA-256, hex.

    The secret has 256 random bits, so a plain hash cannot be brute-forced (no salt or slow
    hash needed, unlike passwords). Storing only the hash means that reading the lock (every
    ``status`` user, a log of the document) never yields what ``release`` requires.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def digest_matches(secret: str | None, digest: str | None) -> bool:
    """Constant-time comparison of ``secret``'s digest with a stored one."""
    if not secret or not digest:
        return False
    return hmac.compare_digest(holder_digest(secret), digest)


def _clip(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _git_commit() -> str | None:
    for var in ("GITHUB_SHA", "CI_COMMIT_SHA", "COMMIT_SHA", "GIT_COMMIT"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _ci_identity() -> tuple[str | None, str | None]:
    """(who, run URL) when running in a known CI, else (None, None)."""
    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true":
        url = None
        if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
            server = env.get("GITHUB_SERVER_URL", "https://github.com")
            url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        return f"github-actions:{env.get('GITHUB_ACTOR', '?')}", url
    if env.get("GITLAB_CI") == "true":
        return f"gitlab-ci:{env.get('GITLAB_USER_LOGIN', '?')}", env.get("CI_JOB_URL")
    if env.get("BUILD_ID") and env.get("PROJECT_ID"):  # Cloud Build
        return f"cloud-build:{env['BUILD_ID']}", None
    if env.get("CI"):
        return f"ci:{env.get('USER', '?')}", env.get("CI_RUN_URL") or env.get("BUILD_URL")
    return None, None


@dataclass(frozen=True, kw_only=True)
class HolderInfo:
    """Who holds (or wants) the lock; stored with the lease and shown to everyone waiting."""

    who: str
    host: str
    pid: int
    git_commit: str | None = None
    ci_run_url: str | None = None
    reason: str | None = None
    command: str | None = None

    @classmethod
    def detect(
        cls, *, reason: str | None = None, command: str | None = None, who: str | None = None
    ) -> HolderInfo:
        """This process's identity: the CI identity (GitHub Actions, GitLab CI, Cloud Build)
        or the OS user, host name, pid and git commit (``git rev-parse HEAD``, or the CI's
        commit variable). ``DEPLOY_LOCK_WHO`` overrides the detected name."""
        ci_who, ci_url = _ci_identity()
        if who is None:
            who = os.environ.get("DEPLOY_LOCK_WHO") or ci_who
        if who is None:
            try:
                who = getpass.getuser()
            except (KeyError, OSError):  # no passwd entry (containers)
                who = f"uid-{os.getuid()}"
        return cls(
            who=_clip(who) or "?",
            host=socket.gethostname(),
            pid=os.getpid(),
            git_commit=_git_commit(),
            ci_run_url=ci_url,
            reason=_clip(reason),
            command=_clip(command),
        )

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies, and this runs on every lock write.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> HolderInfo:
        data = data or {}
        return cls(
            who=str(data.get("who") or "?"),
            host=str(data.get("host") or "?"),
            pid=int(data.get("pid") or 0),
            git_commit=data.get("git_commit"),
            ci_run_url=data.get("ci_run_url"),
            reason=data.get("reason"),
            command=data.get("command"),
        )

    def describe(self) -> str:
        """One line for humans: ``alice on host-1 (pid 42, commit 1a2b3c4)``."""
        extras = [f"pid {self.pid}"]
        if self.git_commit:
            extras.append(f"commit {self.git_commit[:12]}")
        text = f"{self.who} on {self.host} ({', '.join(extras)})"
        if self.command:
            text += f", running {self.command!r}"
        if self.reason:
            text += f", reason: {self.reason}"
        if self.ci_run_url:
            text += f", CI run {self.ci_run_url}"
        return text


@dataclass(kw_only=True)
class Lease:
    """A granted lock. Returned by :meth:`DeployLock.acquire`; pass it to ``renew``/``release``.

    ``token`` is the fencing token: strictly greater than every token granted earlier for this
    stack, so anything the holder writes can carry it and a store can refuse writes with a
    smaller one. ``holder_secret`` is the proof of holding: random, known only to the process
    that acquired the lease (Firestore keeps its SHA-256); ``release`` and ``renew`` from
    another process need it (``DeployLock.lease_for``). It is never shown by ``repr``, ``status``
    or ``to_dict``. ``acquired_at`` and ``expires_at`` are Firestore server times; ``expires_at``
    moves forward on every renewal. ``safe_until`` is the holder's own clock
    (:func:`scripts.deploylock.clock`) reading until which the lease is certainly still valid:
    the send time of the last confirmed write + TTL - :func:`safety_margin`. A lease object is
    updated in place by ``renew``.
    """

    stack: str
    token: int
    lease_id: str
    holder: HolderInfo
    ttl: timedelta
    acquired_at: datetime
    expires_at: datetime
    holder_secret: str = field(repr=False)
    safe_until: float = 0.0
    # Version of the lease document after this holder's last write: renew/release write in
    # one round trip, conditioned on nothing having changed since.
    _update_time: datetime | None = field(default=None, repr=False)
    _seq: int = field(default=0, repr=False)
    _released: bool = field(default=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Everyone may see this: no holder secret."""
        return {
            "stack": self.stack,
            "token": self.token,
            "lease_id": self.lease_id,
            "holder": self.holder.to_dict(),
            "ttl_seconds": self.ttl.total_seconds(),
            "acquired_at": self.acquired_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True, kw_only=True)
class LockStatus:
    """The lock as read at ``read_at`` (Firestore server time).

    ``exists``: a lease document exists (the lock is free when it does not). ``held`` is true
    only for a live lease: not expired at ``read_at`` and not revoked. ``revoked``: a
    force-release told the holder to stop; the lock becomes free when the holder confirms its
    command stopped, or when the lease expires (``expires_at``), whichever comes first.
    ``expired``: the holder stopped renewing (crashed, partitioned); the next acquire takes it
    over. ``token`` is the current lease's, or the last one granted when free.
    """

    stack: str
    exists: bool
    held: bool
    expired: bool
    token: int
    holder: HolderInfo | None
    lease_id: str | None
    ttl: timedelta | None
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime | None
    read_at: datetime
    revoked: bool = False
    revoked_by: dict[str, Any] | None = None
    seq: int = 0

    def describe(self) -> str:
        if not self.exists:
            last = f" (last token {self.token})" if self.token else " (never locked)"
            return f"stack {self.stack!r}: free{last}"
        assert self.holder is not None
        if self.expired:
            return (
                f"stack {self.stack!r}: free (lease of {self.holder.describe()} expired at "
                f"{_fmt(self.expires_at)}; token {self.token})"
            )
        if self.revoked:
            by = self.revoked_by or {}
            return (
                f"stack {self.stack!r}: force-released by {by.get('who', '?')} "
                f"({by.get('reason', '')}); waiting for {self.holder.describe()} to stop, "
                f"free at the latest {_fmt(self.expires_at)} (token {self.token})"
            )
        return (
            f"stack {self.stack!r}: held by {self.holder.describe()} since "
            f"{_fmt(self.acquired_at)}, expires {_fmt(self.expires_at)} unless renewed "
            f"(token {self.token})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "held": self.held,
            "expired": self.expired,
            "revoked": self.revoked,
            "token": self.token,
            "holder": self.holder.to_dict() if self.holder else None,
            "lease_id": self.lease_id,
            "ttl_seconds": self.ttl.total_seconds() if self.ttl else None,
            "acquired_at": _iso(self.acquired_at),
            "renewed_at": _iso(self.renewed_at),
            "expires_at": _iso(self.expires_at),
            "revoked_by": self.revoked_by,
            "read_at": _iso(self.read_at),
        }


@dataclass(frozen=True, kw_only=True)
class LockEvent:
    """One history record, ordered by ``(token, seq)``: ``acquire``, ``takeover`` (of an
    expired lease), ``renew``, ``release``, ``force-release``, ``release-refused`` and
    ``renew-refused`` (an attempt without the holder secret, by ``by``). ``seq`` counts the
    writes of one lease (0: its grant). ``at`` is Firestore server time."""

    seq: int
    event: str
    stack: str
    token: int
    at: datetime | None
    holder: HolderInfo | None
    by: str | None = None
    reason: str | None = None
    previous_holder: HolderInfo | None = None
    previous_token: int | None = None
    lease_id: str | None = None
    #: A force-release that freed the lock at once (``--now``), not waiting for the holder.
    immediate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event": self.event,
            "stack": self.stack,
            "token": self.token,
            "at": _iso(self.at),
            "holder": self.holder.to_dict() if self.holder else None,
            "by": self.by,
            "reason": self.reason,
            "previous_holder": self.previous_holder.to_dict() if self.previous_holder else None,
            "previous_token": self.previous_token,
            "lease_id": self.lease_id,
            "immediate": self.immediate,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _fmt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "?"
