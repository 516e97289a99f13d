"""Counts every HTTP request a Python process sends (volimg's bench, never the product).

The bench puts this folder on PYTHONPATH and names a file in VOLIMG_BENCH_REQUEST_LOG
only for the runs whose requests it counts (never for timed runs). Both volimg and the
OpenStack CLI send through ``requests``' HTTPAdapter (keystoneauth sits on requests), so
wrapping ``HTTPAdapter.send`` sees every request either tool sends, token requests
included: keystoneauth does not log those (``log=False`` in its identity plugins).
"""

from __future__ import annotations

import json
import os

_LOG = os.environ.get("VOLIMG_BENCH_REQUEST_LOG")

if _LOG:
    from requests.adapters import HTTPAdapter

    _send = HTTPAdapter.send

    def _counted_send(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        status = 0
        try:
            response = _send(self, request, *args, **kwargs)
            status = response.status_code
            return response
        finally:
            with open(_LOG, "a", encoding="utf-8") as log:
                line = {"method": request.method, "url": request.url, "status": status}
                log.write(json.dumps(line) + "\n")

    HTTPAdapter.send = _counted_send  # type: ignore[method-assign]
