"""REGISTER handling: digest authentication, then the registrar (RFC 3261 §10.3).

Pure: it turns a REGISTER into a response plus facts for the adapters (a binding
change to persist, a failed authentication to log). Only a device that proves its
identity by digest may change the bindings of its own address of record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from ivr.sip.auth import DigestAuth, pick_credentials
from ivr.sip.headers import param, parse_int_header, parse_name_addr
from ivr.sip.message import Request, SipParseError
from ivr.sip.registrar import Binding, ContactBinding, Registrar
from ivr.sip.uri import UriError, parse_uri

Lookup = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """One failed authentication, for the security log (fail2ban reads it)."""

    source: str
    user: str | None
    reason: str
    method: str


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    """The reply, plus the binding changes to persist and any failure to log."""

    reply: Reply
    changed: tuple[Binding, ...] = ()
    removed: tuple[Binding, ...] = ()
    failure: AuthFailure | None = None


class RegistrationService:
    """Authenticates REGISTERs against device credentials and updates the registrar."""

    def __init__(
        self,
        *,
        domain: str,
        auth: DigestAuth,
        registrar: Registrar,
        lookup: Lookup,
        server_uri_ok: Callable[[str], bool] | None = None,
        algorithms_for: Callable[[str], tuple[str, ...] | None] = lambda user: None,
    ) -> None:
        self.domain = domain
        self.auth = auth
        self.registrar = registrar
        self.lookup = lookup
        self.server_uri_ok = server_uri_ok
        self.algorithms_for = algorithms_for
        self._date_second = -1
        self._date_text = ""

    def _date(self, now: float) -> str:
        """The Date header for ``now`` (formatted once per second)."""
        second = int(now)
        if second != self._date_second:
            self._date_text = formatdate(second, usegmt=True)
            self._date_second = second
        return self._date_text

    def challenge(
        self, now: float, *, stale: bool = False, proxy: bool = False, user: str | None = None
    ) -> Reply:
        """A 401 (or 407) with our challenges; ``user`` (claimed in From, unverified) only
        picks a device's configured algorithm list, e.g. MD5 alone for old phones."""
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        status = 407 if proxy else 401
        algorithms = self.algorithms_for(user) if user else None
        values = self.auth.challenge(now, stale=stale, algorithms=algorithms)
        return Reply(status, None, tuple((name, value) for value in values))

    def authenticate(
        self, request: Request, source: str, now: float, *, proxy: bool = False
    ) -> tuple[str | None, RegisterOutcome | None]:
        """The authenticated username, or the challenge/refusal to send instead."""
        header = "proxy-authorization" if proxy else "authorization"
        credentials = pick_credentials(request.headers.values(header), self.auth.realm)
        result = self.auth.verify(
            method=request.method,
            request_uri=request.uri,
            authorization=credentials,
            now=now,
            lookup=self.lookup,
            uri_ok=self.server_uri_ok,
        )
        if result.ok:
            return result.username, None
        failure = None
        if credentials is not None and not result.stale:
            failure = AuthFailure(source, result.claimed_username, result.reason, request.method)
        challenge = self.challenge(now, stale=result.stale, proxy=proxy, user=_from_user(request))
        return None, RegisterOutcome(challenge, failure=failure)

    def handle(self, request: Request, source: str, now: float) -> RegisterOutcome:
        """Answer one REGISTER."""
        try:
            to = parse_name_addr(request.headers.get("to") or "")
        except SipParseError as exc:
            return RegisterOutcome(Reply(400, f"Bad To header: {exc.reason}"))
        if to.uri.scheme not in ("sip", "sips") or not to.uri.user:
            return RegisterOutcome(Reply(400, "To must be a SIP address of record"))
        user = to.uri.user_decoded or ""
        username, refusal = self.authenticate(request, source, now)
        if refusal is not None:
            return refusal
        if username != user:
            failure = AuthFailure(source, username, "aor-mismatch", "REGISTER")
            return RegisterOutcome(Reply(403, "Not allowed to register this AOR"), failure=failure)
        aor = f"sip:{user}@{self.domain}"
        try:
            contacts = _contacts(request)
            expires = request.headers.get("expires")
            expires_header = parse_int_header(expires, "Expires") if expires else None
            cseq = int((request.headers.get("cseq") or "0").split()[0])
        except SipParseError as exc:
            return RegisterOutcome(Reply(400, exc.reason))
        result = self.registrar.register(
            aor,
            contacts,
            expires_header,
            request.call_id,
            cseq,
            source,
            now,
        )
        headers: list[tuple[str, str]] = []
        if result.min_expires is not None:
            headers.append(("Min-Expires", str(result.min_expires)))
        for binding, remaining in result.contacts:
            headers.append(("Contact", f"<{binding.contact}>;expires={remaining}"))
        if result.status == 200:
            headers.append(("Date", self._date(now)))
        return RegisterOutcome(
            Reply(result.status, result.reason, tuple(headers)),
            changed=result.changed,
            removed=result.removed,
        )


def _from_user(request: Request) -> str | None:
    try:
        return parse_name_addr(request.headers.get("from") or "").uri.user_decoded
    except SipParseError:
        return None


def _contacts(request: Request) -> list[ContactBinding] | str:
    values = request.headers.get_all("contact")
    if len(values) == 1 and values[0].strip() == "*":
        return "*"
    contacts: list[ContactBinding] = []
    for value in values:
        if value.strip() == "*":
            raise SipParseError("Contact * must stand alone")
        addr = parse_name_addr(value)
        expires = param(addr.params, "expires")
        q = param(addr.params, "q")
        contacts.append(
            ContactBinding(
                contact=str(addr.uri),
                expires=parse_int_header(expires, "Contact expires") if expires else None,
                q=_q(q),
                instance=param(addr.params, "+sip.instance"),
                reg_id=param(addr.params, "reg-id"),
            )
        )
    return contacts


def _q(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise SipParseError(f"Bad q value {text[:10]!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise SipParseError("q value out of range")
    return value


def server_uri_policy(names: Callable[[], tuple[set[str], int]]) -> Callable[[str], bool]:
    """Accept a digest uri naming this server itself: ``sip:HOST[:PORT]`` with no user,
    HOST one of ours and PORT ours. ``names()`` gives (our hosts, our port) at call time."""

    def ok(uri: str) -> bool:
        try:
            parsed = parse_uri(uri)
        except UriError:
            return False
        hosts, port = names()
        bare = {host.strip("[]").lower() for host in hosts}
        return (
            parsed.scheme in ("sip", "sips")
            and parsed.user is None
            and parsed.host.strip("[]").lower() in bare
            and (parsed.port or 5060) == port
        )

    return ok
