"""The support console's service: the alert feed, the knowledge base and remote troubleshooting.

Every public function takes the :class:`~dashboards.access.Principal` first and the
:class:`~dashboards.access.Access` second, and checks before it reads or acts; a refusal raises
:class:`~dashboards.access.AccessDenied` (logged). Actions are logged with their outcome. No
Streamlit here: tests call these functions directly.

Permissions: acknowledging and resolving alerts needs ``ACKNOWLEDGE_ALERTS`` on the alert's
charger (or on a charger of its site, for site-wide alerts); soft reset, unlocking and
triggering a message need ``SOFT_TROUBLESHOOT`` (owners have it on their own chargers); hard
reset, availability, the configuration check and diagnostics need ``TROUBLESHOOT``.
Timelines and tickets are in :mod:`dashboards.support_records`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final, Protocol

from control.access import Decision, Permission, Role
from control.contract import AlertState, JsonScalar, Severity
from control.support import (
    TRIGGER_MESSAGES,
    V201_NAMES,
    ConfigDifference,
    config_check,
    config_summary,
    expected_profile,
    fault_code,
)
from dashboards.access import Access, AccessDenied, Principal
from warehouse import alert_store, support_store
from warehouse.alert_store import AlertRow, TransitionRow
from warehouse.command_api import DEFAULT_TIMEOUT_S, Action, CommandReply, ReplyState, Target
from warehouse.support_store import ActionRecord, ActionRow, ChargerFacts, DiagnosticFile, Guide

ACTION_PERMISSION: Final[Mapping[Action, Permission]] = {
    Action.SOFT_RESET: Permission.SOFT_TROUBLESHOOT,
    Action.RELEASE_CABLE: Permission.SOFT_TROUBLESHOOT,   # UnlockConnector
    Action.TRIGGER: Permission.SOFT_TROUBLESHOOT,
    Action.HARD_RESET: Permission.TROUBLESHOOT,
    Action.CHANGE_AVAILABILITY: Permission.TROUBLESHOOT,
    Action.GET_CONFIG: Permission.TROUBLESHOOT,
    Action.GET_DIAGNOSTICS: Permission.TROUBLESHOOT,
}
ACTION_LABELS: Final[Mapping[Action, str]] = {
    Action.SOFT_RESET: "Soft reset", Action.HARD_RESET: "Hard reset", Action.RELEASE_CABLE: "Unlock connector",
    Action.TRIGGER: "Trigger message", Action.CHANGE_AVAILABILITY: "Change availability",
    Action.GET_CONFIG: "Configuration check", Action.GET_DIAGNOSTICS: "Request diagnostics",
}
MAX_NOTE_CHARS: Final = 2000


class CommandSender(Protocol):
    """What :class:`warehouse.command_api.CommandService` offers (a fake in tests)."""

    def send(self, action: Action, target: Target, *, requested_by: str | None,
             params: Mapping[str, JsonScalar] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandReply: ...


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class AlertFilters:
    severities: tuple[Severity, ...] = ()
    kinds: tuple[str, ...] = ()
    site_ids: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    states: tuple[AlertState, ...] = (AlertState.OPEN, AlertState.ACKNOWLEDGED)
    charger_ids: tuple[str, ...] = ()   # narrower than the user's scope (e.g. the sidebar's location)


@dataclass(frozen=True, slots=True)
class AlertFeed:
    alerts: list[AlertRow]
    may_acknowledge: bool


@dataclass(frozen=True, slots=True)
class AlertDetail:
    alert: AlertRow
    transitions: list[TransitionRow]
    guide: Guide | None
    may_acknowledge: bool


def _sees_everything(who: Principal) -> bool:
    return who.grants.has_platform(Role.SUPPORT, Role.OPERATOR)


def alert_feed(who: Principal, access: Access, filters: AlertFilters = AlertFilters(), *,
               limit: int = 300) -> AlertFeed:
    """The alerts the user may see, newest first, filtered."""
    scope: list[str] | None = None if _sees_everything(who) else access.visible_ids(who)
    if filters.charger_ids:
        wanted = set(filters.charger_ids)
        scope = [c for c in (scope if scope is not None else filters.charger_ids) if c in wanted]
    with access.connection() as conn:
        rows = alert_store.list_alerts(conn, charger_ids=scope, severities=filters.severities, kinds=filters.kinds,
                                       site_ids=filters.site_ids, models=filters.models, states=filters.states,
                                       limit=limit)
    # Platform-wide: support, operators, fleet managers (each alert is checked again when acted on).
    return AlertFeed(rows, access.check(who, Permission.ACKNOWLEDGE_ALERTS).allowed)


def _alert_charger(who: Principal, access: Access, alert: AlertRow) -> str | None:
    """The charger an alert is checked on: its own, or for a site-wide alert a visible charger of its site."""
    if alert.charger_id is not None:
        return alert.charger_id
    if _sees_everything(who):
        return None
    refs = access.visible(who, site_id=alert.site_id) if alert.site_id else []
    if not refs:
        access.log(who, Permission.VIEW.value, None, allowed=False, detail=f"alert {alert.alert_id}")
        raise AccessDenied(Decision(False, f"you have no access to alert {alert.alert_id}"), Permission.VIEW, None)
    return refs[0].charger_id


def _visible_alert(who: Principal, access: Access, alert_id: str) -> tuple[AlertRow, str | None]:
    with access.connection() as conn:
        alert = alert_store.get_alert(conn, alert_id)
    charger_id = _alert_charger(who, access, alert)
    if charger_id is not None:
        access.require(who, Permission.VIEW, charger_id)
    return alert, charger_id


def alert_detail(who: Principal, access: Access, alert_id: str) -> AlertDetail:
    alert, charger_id = _visible_alert(who, access, alert_id)
    with access.connection() as conn:
        steps = alert_store.transitions(conn, alert_id)
        kb = support_store.guides(conn)
    return AlertDetail(alert, steps, guide_for(kb, alert),
                       access.check(who, Permission.ACKNOWLEDGE_ALERTS, charger_id).allowed)


def guide_for(kb: Sequence[Guide], alert: AlertRow) -> Guide | None:
    code = fault_code(alert.kind, alert.dedupe_key, alert.message, (g.code for g in kb))
    return next((g for g in kb if g.code == code), None)


def _clean_note(note: str | None) -> str | None:
    text = (note or "").strip()
    if len(text) > MAX_NOTE_CHARS:
        raise ValueError(f"the note is too long ({len(text)} characters, at most {MAX_NOTE_CHARS})")
    return text or None


def acknowledge_alert(who: Principal, access: Access, alert_id: str, note: str | None) -> AlertRow:
    return _act_on_alert(who, access, alert_id, note, AlertState.ACKNOWLEDGED)


def resolve_alert(who: Principal, access: Access, alert_id: str, note: str | None) -> AlertRow:
    return _act_on_alert(who, access, alert_id, note, AlertState.RESOLVED)


def _act_on_alert(who: Principal, access: Access, alert_id: str, note: str | None, target: AlertState) -> AlertRow:
    alert, charger_id = _visible_alert(who, access, alert_id)
    access.require(who, Permission.ACKNOWLEDGE_ALERTS, charger_id)
    text = _clean_note(note)
    verb = "acknowledge_alert" if target is AlertState.ACKNOWLEDGED else "resolve_alert"
    try:
        with access.connection() as conn:
            act = alert_store.acknowledge if target is AlertState.ACKNOWLEDGED else alert_store.resolve
            row = act(conn, alert_id, who.user_id, text, now=access.now())
    except Exception as exc:
        access.log(who, verb, alert.charger_id, allowed=True, detail=f"{alert_id}: failed: {exc}"[:500])
        raise
    access.log(who, verb, alert.charger_id, allowed=True, detail=f"{alert_id}: {text or ''}"[:500])
    return row


def alert_transitions(who: Principal, access: Access, alert_id: str) -> list[TransitionRow]:
    _visible_alert(who, access, alert_id)
    with access.connection() as conn:
        return alert_store.transitions(conn, alert_id)


# --------------------------------------------------------------------------- knowledge base


def knowledge_base(who: Principal, access: Access) -> list[Guide]:
    """Every guide (plain steps per fault code); anyone with a visible charger may read them."""
    if not access.visible_ids(who):
        raise AccessDenied(Decision(False, "you have no chargers, so no fault guides apply"), Permission.VIEW, None)
    with access.connection() as conn:
        return support_store.guides(conn)


def save_guide(who: Principal, access: Access, *, code: str, title: str, steps: Sequence[str],
               remote_fixable: bool) -> None:
    """Support (platform-wide ``TROUBLESHOOT``) edits the knowledge base."""
    access.require(who, Permission.TROUBLESHOOT)
    clean = [s.strip() for s in steps if s.strip()]
    if not code.strip() or not title.strip() or not clean:
        raise ValueError("a guide needs a code, a title and at least one step")
    with access.connection() as conn:
        support_store.save_guide(conn, code=code.strip(), title=title.strip(), steps=clean,
                                 remote_fixable=remote_fixable, user_id=who.user_id, now=access.now())
    access.log(who, "save_fault_guide", None, detail=code.strip())


# --------------------------------------------------------------------------- troubleshooting


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: Action
    replies: tuple[CommandReply, ...]
    summary: str
    payload: Mapping[str, JsonScalar] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.replies) and all(r.ok for r in self.replies)


@dataclass(frozen=True, slots=True)
class ConfigCheck:
    charger: ChargerFacts
    differences: list[ConfigDifference]
    values: Mapping[str, JsonScalar]      # everything the charger reported
    summary: str
    result: ActionResult


def allowed_actions(who: Principal, access: Access, charger_id: str) -> dict[Action, bool]:
    """Which troubleshooting buttons to enable (each action checks again)."""
    access.require(who, Permission.VIEW, charger_id)
    return {a: access.check(who, p, charger_id).allowed for a, p in ACTION_PERMISSION.items()}


def charger_facts(who: Principal, access: Access, charger_id: str) -> ChargerFacts:
    access.require(who, Permission.VIEW, charger_id)
    with access.connection() as conn:
        return support_store.charger_facts(conn, charger_id)


def _check_params(action: Action, params: Mapping[str, JsonScalar]) -> None:
    if action is Action.TRIGGER and params.get("message") not in TRIGGER_MESSAGES:
        raise ValueError(f"trigger one of {', '.join(TRIGGER_MESSAGES)}")
    if action is Action.CHANGE_AVAILABILITY and params.get("type") not in ("Operative", "Inoperative"):
        raise ValueError("availability is Operative or Inoperative")


def _record(who: Principal, access: Access, charger_id: str, connector_id: int | None, action: Action,
            params: Mapping[str, JsonScalar], replies: Sequence[CommandReply], summary: str,
            payload: Mapping[str, JsonScalar]) -> None:
    last = replies[-1] if replies else None
    with access.connection() as conn:
        support_store.record_action(conn, ActionRecord(
            ts=access.now(), user_id=who.user_id, charger_id=charger_id, connector_id=connector_id,
            action=action.value, params=params, command_id=last.command_id if last else None,
            reply_state=last.state.value if last else ReplyState.NOT_SENT.value,
            outcome=last.outcome.value if last and last.outcome else None, status=last.status if last else None,
            detail=last.detail if last else None, payload=payload, summary=summary))
    access.log(who, action.value, charger_id, allowed=True, detail=summary[:500])


def run_action(who: Principal, access: Access, sender: CommandSender, charger_id: str, action: Action, *,
               connector_id: int | None = None, params: Mapping[str, JsonScalar] | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> ActionResult:
    """Send one troubleshooting command and wait for the charger's answer (or say there was none)."""
    permission = ACTION_PERMISSION.get(action)
    if permission is None:
        raise ValueError(f"{action.value} is not a troubleshooting action")
    access.require(who, permission, charger_id)
    extra = dict(params or {})
    _check_params(action, extra)
    if action is Action.RELEASE_CABLE and not connector_id:
        raise ValueError("choose the connector to unlock")
    reply = sender.send(action, Target(charger_id, connector_id), requested_by=who.user_id, params=extra,
                        timeout_s=timeout_s)
    payload = dict(reply.payload)
    summary = reply.message
    if action is Action.GET_DIAGNOSTICS and reply.ok and payload.get("file_name"):
        summary += f"; it will upload {payload['file_name']}"
    _record(who, access, charger_id, connector_id, action, extra, [reply], summary, payload)
    return ActionResult(action, (reply,), summary, payload)


def request_diagnostics(who: Principal, access: Access, sender: CommandSender, charger_id: str, *,
                        upload_base_url: str, hours: int = 24, timeout_s: float = DEFAULT_TIMEOUT_S) -> ActionResult:
    """GetDiagnostics / GetLog of the last ``hours``, uploaded to ``<upload_base_url>/<charger_id>``."""
    start = access.now() - timedelta(hours=hours)
    params: dict[str, JsonScalar] = {"location": f"{upload_base_url.rstrip('/')}/{charger_id}",
                                     "start_time": start.isoformat(), "retries": 2, "retry_interval": 30}
    return run_action(who, access, sender, charger_id, Action.GET_DIAGNOSTICS, params=params, timeout_s=timeout_s)


def check_configuration(who: Principal, access: Access, sender: CommandSender, charger_id: str, *,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> ConfigCheck:
    """Read the charger's configuration and compare it with its model's expected profile.

    OCPP 1.6: one GetConfiguration for every key; 2.0.1: one GetVariables per expected key."""
    access.require(who, Permission.TROUBLESHOOT, charger_id)
    with access.connection() as conn:
        facts = support_store.charger_facts(conn, charger_id)
    profile = expected_profile(facts.model)
    replies: list[CommandReply] = []
    values: dict[str, JsonScalar] = {}
    if facts.ocpp_version == "2.0.1":
        for exp in profile:
            name = V201_NAMES.get(exp.key)
            if name is None:
                continue
            reply = sender.send(Action.GET_CONFIG, Target(charger_id), requested_by=who.user_id,
                                params={"key": name}, timeout_s=timeout_s)
            replies.append(reply)
            values.update(reply.payload)
            if reply.state is not ReplyState.DONE:
                break  # offline or no bridge: do not wait once per key
    else:
        reply = sender.send(Action.GET_CONFIG, Target(charger_id), requested_by=who.user_id, timeout_s=timeout_s)
        replies.append(reply)
        values.update(reply.payload)
    answered = any(r.ok for r in replies)
    differences = config_check(profile, values) if answered else []
    summary = config_summary(differences) if answered else (replies[-1].message if replies else "nothing was sent")
    _record(who, access, charger_id, None, Action.GET_CONFIG, {}, replies, summary, values)
    return ConfigCheck(facts, differences, values, summary, ActionResult(Action.GET_CONFIG, tuple(replies), summary,
                                                                        values))


def action_history(who: Principal, access: Access, charger_id: str, *, limit: int = 30) -> list[ActionRow]:
    """The troubleshooting actions on this charger, newest first, with late results."""
    access.require(who, Permission.SOFT_TROUBLESHOOT, charger_id)
    with access.connection() as conn:
        return support_store.recent_actions(conn, charger_id, limit=limit)


# --------------------------------------------------------------------------- diagnostic files


def diagnostic_files(who: Principal, access: Access, charger_id: str) -> list[DiagnosticFile]:
    access.require(who, Permission.TROUBLESHOOT, charger_id)
    with access.connection() as conn:
        return support_store.diagnostic_files(conn, [charger_id])


def read_diagnostic_file(who: Principal, access: Access, file_id: int, uploads_dir: Path) -> tuple[DiagnosticFile,
                                                                                                   bytes]:
    """The file's record and bytes (for a download); logged."""
    with access.connection() as conn:
        record = support_store.diagnostic_file(conn, file_id)
    access.require(who, Permission.TROUBLESHOOT, record.charger_id)
    path = (uploads_dir / record.path).resolve()
    if uploads_dir.resolve() not in path.parents:
        raise ValueError(f"diagnostic file {file_id} points outside the uploads directory")
    data = path.read_bytes()
    access.log(who, "download_diagnostics", record.charger_id, detail=record.file_name)
    return record, data


def charger_guides(who: Principal, access: Access, charger_id: str) -> list[tuple[AlertRow, Guide | None]]:
    """The charger's alerts that are not resolved, each with its guided steps (if the base has them)."""
    access.require(who, Permission.VIEW, charger_id)
    with access.connection() as conn:
        alerts = alert_store.list_alerts(conn, charger_ids=[charger_id],
                                         states=(AlertState.OPEN, AlertState.ACKNOWLEDGED), limit=50)
        kb = support_store.guides(conn)
    return [(a, guide_for(kb, a)) for a in alerts if a.charger_id == charger_id]
