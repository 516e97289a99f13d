"""volimg's sandbox cloud: Keystone v3, Cinder v3 and multi-store Glance v2 on loopback.

It answers the way the real services do (status codes, field names, asynchronous
behaviour) for the calls volimg and the equivalent `openstack` commands make, so the
test suite, `volimg demo` and users' CI can run against real HTTP through the real
openstacksdk. See docs/sandbox.md.

Importing this package starts nothing and imports no openstacksdk.
"""

import logging

from volimg.sandbox.faults import Faults
from volimg.sandbox.reqlog import RequestLog, RequestRecord
from volimg.sandbox.sandbox import Sandbox, SandboxBindRefused
from volimg.sandbox.seed import Credentials
from volimg.sandbox.state import Cloud
from volimg.sandbox.timings import Timings

# A library logs, the application decides where to (logging HOWTO, "Configuring
# Logging for a Library").
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Cloud",
    "Credentials",
    "Faults",
    "RequestLog",
    "RequestRecord",
    "Sandbox",
    "SandboxBindRefused",
    "Timings",
]
