"""Diagnostics/log uploads of a simulated charger (GetDiagnostics / GetLog).

A real charger answers the call with a file name, then uploads the file to the ``location`` it
was given. The simulator does the same over HTTP: ``PUT <location>/<file name>`` with a small
text report of the station (connectors, their errors, its configuration), in a background
thread so the charger's event loop never waits on the upload. Locations other than http(s)
(FTP is common on real hardware) are not simulated: they are logged and skipped.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from ingest.sim.station import Station

log = logging.getLogger(__name__)


def diagnostics_report(st: Station, now: datetime, kind: str) -> bytes:
    """The file a simulated charger uploads: plain text, one fact a line."""
    lines = [f"# FlowSim {kind} of {st.id}", f"generated_at={now.isoformat()}", f"ocpp_version={st.version}",
             f"model={st.spec.model}", f"online={st.online}"]
    for cid, c in sorted(st.connectors.items()):
        lines.append(f"connector.{cid}.phase={c.phase}")
        lines.append(f"connector.{cid}.error_code={c.error_code or 'NoError'}")
        lines.append(f"connector.{cid}.operative={c.operative}")
    lines += [f"config.{key}={value}" for key, value in sorted(st.variables.values.items())]
    return ("\n".join(lines) + "\n").encode()


def upload_url(location: str, file_name: str) -> str | None:
    """Where the file goes (None: not an HTTP location)."""
    if not location.lower().startswith(("http://", "https://")):
        return None
    return f"{location.rstrip('/')}/{quote(file_name)}"


def put_file(url: str, content: bytes, *, timeout_s: float = 15.0) -> int:
    """PUT the bytes; the HTTP status (0 when the receiver could not be reached)."""
    request = urllib.request.Request(url, data=content, method="PUT",  # noqa: S310 - http(s) only, checked above
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        log.warning("upload to %s failed: %s", url, exc)
        return 0


def start_upload(location: str, file_name: str, content: bytes) -> threading.Thread | None:
    """Upload in the background (the thread is returned for tests; None when not HTTP)."""
    url = upload_url(location, file_name)
    if url is None:
        log.info("not uploading %s: only http(s) locations are simulated (%s)", file_name, location[:80])
        return None

    def run() -> None:
        status = put_file(url, content)
        log.info("uploaded %s to %s: HTTP %s", file_name, url, status or "unreachable")

    thread = threading.Thread(target=run, name=f"upload-{file_name}", daemon=True)
    thread.start()
    return thread
