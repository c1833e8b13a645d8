"""Charging history, summaries and exports, scoped to the person asking.

Who sees which sessions: on a charger where the user may see every session
(``Permission.VIEW_ALL_SESSIONS``: owners, fleet managers, support, operators) all of them; on a
charger where they may only see their own (``VIEW_OWN_SESSIONS``: members) only the sessions
started with their own id tags. The warehouse functions (``warehouse.history``, ``reports``)
take the charger scope and filters; this module decides both, so no page can widen them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

import polars as pl

from control.access import Permission, decide
from dashboards.access import Access, AccessDenied, Principal
from reports.build import Report, build_report, reimbursement_statement
from warehouse.history import (
    LIST_SCHEMA,
    HistoryFilter,
    PeriodTotal,
    SessionDetail,
    excluded_sessions,
    history_list,
    history_overview,
    session_detail,
    top_chargers,
)
from warehouse.history_rollup import summaries as summaries_of
from warehouse.queries import NotFoundError
from warehouse.session_notes import SessionNote, add_note, notes_for


@dataclass(frozen=True, slots=True)
class HistoryScope:
    every_session: tuple[str, ...]  # chargers where the user sees everyone's sessions
    own_sessions: tuple[str, ...]   # chargers where the user sees only their own

    @property
    def chargers(self) -> tuple[str, ...]:
        return self.every_session + self.own_sessions

    @property
    def only_own(self) -> bool:
        return not self.every_session


@dataclass(frozen=True, slots=True)
class Overview:
    history: pl.DataFrame
    months: list[PeriodTotal]
    total: PeriodTotal
    excluded: pl.DataFrame
    top: pl.DataFrame
    daily: pl.DataFrame


def _merge(totals: list[PeriodTotal]) -> list[PeriodTotal]:
    """One PeriodTotal per period: the sums of ``totals`` (from disjoint sets of sessions)."""
    out: dict[date | None, PeriodTotal] = {}
    for t in totals:
        o = out.get(t.period)
        if o is None:
            out[t.period] = t
            continue
        costs = dict(o.costs)
        for cur, (net, vat) in t.costs.items():
            n0, v0 = costs.get(cur, (0, 0))
            costs[cur] = (n0 + net, v0 + vat)
        out[t.period] = PeriodTotal(t.period, o.energy_wh + t.energy_wh, o.sessions + t.sessions,
                                    o.excluded_sessions + t.excluded_sessions, costs,
                                    o.no_tariff_sessions + t.no_tariff_sessions,
                                    o.uncosted_sessions + t.uncosted_sessions)
    return [out[k] for k in sorted(out, key=lambda d: d or date.min)]


class HistoryService:
    def __init__(self, access: Access) -> None:
        self._access = access

    def scope(self, who: Principal, *, charger_ids: tuple[str, ...] = ()) -> HistoryScope:
        every, own = [], []
        for ref in self._access.visible(who, charger_ids=list(charger_ids) or None):
            if decide(who.grants, Permission.VIEW_ALL_SESSIONS, ref).allowed:
                every.append(ref.charger_id)
            elif decide(who.grants, Permission.VIEW_OWN_SESSIONS, ref).allowed:
                own.append(ref.charger_id)
        return HistoryScope(tuple(every), tuple(own))

    def _parts(self, who: Principal, flt: HistoryFilter) -> list[tuple[tuple[str, ...], HistoryFilter]]:
        """(charger scope, filter) pairs of what the user may see: everyone's sessions on some
        chargers, their own on the others."""
        scope = self.scope(who, charger_ids=flt.charger_ids)
        parts = []
        if scope.every_session:
            parts.append((scope.every_session, flt))
        if scope.own_sessions:
            parts.append((scope.own_sessions, replace(flt, user_ids=(who.user_id,))))
        return parts

    def sessions(self, who: Principal, flt: HistoryFilter) -> pl.DataFrame:
        """The filtered sessions the user may see, oldest first (``warehouse.history.LIST_SCHEMA``)."""
        parts = self._parts(who, flt)
        if not parts:
            return pl.DataFrame(schema=LIST_SCHEMA)
        with self._access.connection() as conn:
            frames = [history_list(conn, ids, part) for ids, part in parts]
        return pl.concat(frames).sort("started_at", "session_id")

    def overview(self, who: Principal, flt: HistoryFilter, *, by: Literal["month", "year"] | None = "month",
                 daily: bool = True) -> Overview:
        """The sessions (:meth:`sessions`) and their figures. ``by`` None: no per-period totals
        (``months`` empty); ``daily`` False: no per-day energy (``daily`` empty)."""
        parts = self._parts(who, flt)
        with self._access.connection() as conn:
            found = history_overview(conn, parts, flt, by, daily=daily)
        history = found.history
        total = found.total[0] if found.total else PeriodTotal(None, 0.0, 0, 0)
        return Overview(history, found.periods, total, excluded_sessions(history), top_chargers(history),
                        found.daily if found.daily is not None else pl.DataFrame())

    def summaries(self, who: Principal, flt: HistoryFilter, *,
                  by: Literal["month", "year"] = "month") -> Overview:
        """The figures of :meth:`overview` without the session list, summed by the database (a
        calendar year from the rollups of ``warehouse.history_rollup``: a 1,000-charger fleet's
        year in a tenth of a second); ``history`` and ``daily`` are left empty."""
        parts = self._parts(who, flt)
        periods: list[list[PeriodTotal]] = []
        totals: list[list[PeriodTotal]] = []
        tops, excluded = [], []
        with self._access.connection() as conn:
            for ids, part in parts:
                found = summaries_of(conn, ids, part, by)
                periods.append(found.periods)
                totals.append([found.total])
                tops.append(found.top)
                excluded.append(found.excluded)
        merged_total = _merge([t for ts in totals for t in ts])
        return Overview(pl.DataFrame(schema=LIST_SCHEMA), _merge([t for part in periods for t in part]),
                        merged_total[0] if merged_total else PeriodTotal(None, 0.0, 0, 0),
                        pl.concat(excluded) if excluded else excluded_sessions(pl.DataFrame(schema=LIST_SCHEMA)),
                        pl.concat(tops).sort("energy_wh", "charger_id", descending=[True, False]).head(10)
                        if tops else top_chargers(pl.DataFrame(schema=LIST_SCHEMA)),
                        pl.DataFrame())

    def detail(self, who: Principal, session_id: str) -> SessionDetail:
        """One session, if the user may see it; NotFoundError otherwise (same answer either way)."""
        scope = self.scope(who)
        with self._access.connection() as conn:
            if scope.every_session:
                try:
                    return session_detail(conn, scope.every_session, session_id)
                except NotFoundError:
                    pass
            if scope.own_sessions:
                found = session_detail(conn, scope.own_sessions, session_id)
                if found.session.get("user_id") == who.user_id:
                    return found
        raise NotFoundError(f"no session {session_id!r} is stored on a charger you may see")

    def _exportable(self, who: Principal, scope: HistoryScope) -> HistoryScope:
        """The part of ``scope`` the user may export; AccessDenied (logged) when nothing is left."""
        refs = {r.charger_id: r for r in self._access.visible(who, charger_ids=list(scope.chargers))}

        def ok(ids: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(c for c in ids if c in refs and decide(who.grants, Permission.EXPORT, refs[c]).allowed)

        allowed = HistoryScope(ok(scope.every_session), ok(scope.own_sessions))
        if not allowed.chargers:
            decision = decide(who.grants, Permission.EXPORT)
            self._access.log(who, Permission.EXPORT.value, None, allowed=False, detail=decision.reason)
            raise AccessDenied(decision, Permission.EXPORT, None)
        return allowed

    def notes(self, who: Principal, session_id: str) -> list[SessionNote]:
        self.detail(who, session_id)  # the same visibility as the session itself
        with self._access.connection() as conn:
            return notes_for(conn, session_id)

    def add_note(self, who: Principal, session_id: str, body: str) -> SessionNote:
        """Anyone who may see a session may annotate it; the note names its author."""
        self.detail(who, session_id)
        with self._access.connection() as conn:
            note = add_note(conn, session_id, who.user_id, body, now=self._access.now())
        self._access.log(who, "session_note", None, detail=session_id)
        return note

    def report(self, who: Principal, flt: HistoryFilter, *, fleet: bool = False) -> Report:
        """The PDF/CSV report of what the user sees (their own sessions only where that is all they see).

        A user who sees every session on some chargers and only their own on others gets the
        chargers where they see everything (the report names its scope).
        """
        scope = self._exportable(who, self.scope(who, charger_ids=flt.charger_ids))
        if scope.only_own:
            charger_scope, flt, label = scope.own_sessions, replace(flt, user_ids=(who.user_id,)), \
                f"{who.display_name}'s own sessions"
        else:
            charger_scope = scope.every_session
            label = f"{who.display_name}: {len(charger_scope)} charger{'s' if len(charger_scope) != 1 else ''}"
        with self._access.connection() as conn:
            report = build_report(conn, charger_scope, flt, kind="fleet" if fleet else "owner", scope_label=label,
                                  now=self._access.now(), group_by=("site", "cost_centre", "vehicle") if fleet else ())
        self._access.log(who, "export_report", None, detail=f"{flt.first_day}..{flt.last_day}")
        return report

    def reimbursement(self, who: Principal, month: date) -> Report:
        """The user's own statement for a month: sessions with their tokens on chargers they may see."""
        scope = self._exportable(who, self.scope(who))
        with self._access.connection() as conn:
            report = reimbursement_statement(conn, scope.chargers, who.user_id, month, user_label=who.display_name,
                                             now=self._access.now())
        self._access.log(who, "export_reimbursement", None, detail=month.isoformat())
        return report
