"""The one package that talks to openstacksdk: ``Gateway``, volimg's view of one cloud.

It returns volimg's own frozen values (``volimg.model``) and turns every SDK and
keystoneauth exception into a ``volimg.errors`` exception, so nothing above it knows
openstacksdk exists. openstacksdk is imported lazily: ``volimg --help`` must not pay
for it.

One part per service, as openstacksdk has one proxy per service:

- ``session.py``: ``connect`` and ``cloud_names`` (clouds.yaml, timeouts, retries), and
  ``Session``, which holds the connection, forks it for a worker thread, and asks
  Keystone who we are;
- ``cinder.py``: ``CinderCalls``, volumes, volume types and the upload to Glance;
- ``glance.py``: ``GlanceCalls``, stores, images, copies between stores, import tasks;
- ``values.py``: Cinder's resources and Glance's JSON as ``volimg.model`` values;
- ``errors.py``: ``translate_error`` and ``_calling``, SDK exceptions as volimg's.

``Gateway`` is a Session with both services' calls; callers import everything from
here (``from volimg.gateway import Gateway, connect``), never from the parts.
"""

from volimg.gateway.cinder import MESSAGES_FILTER_MICROVERSION, MESSAGES_MICROVERSION, CinderCalls
from volimg.gateway.errors import translate_error
from volimg.gateway.glance import IMAGE_PAGE, GlanceCalls
from volimg.gateway.session import (
    CONNECT_RETRIES,
    DEFAULT_HTTP_TIMEOUT,
    NO_RETRY,
    STATUS_CODE_RETRIES,
    cloud_names,
    connect,
    is_unreachable,
    new_request_id,
)


class Gateway(CinderCalls, GlanceCalls):
    """volimg's view of one cloud: Keystone, Cinder and Glance through one connection."""


__all__ = [
    "CONNECT_RETRIES",
    "DEFAULT_HTTP_TIMEOUT",
    "IMAGE_PAGE",
    "MESSAGES_FILTER_MICROVERSION",
    "MESSAGES_MICROVERSION",
    "NO_RETRY",
    "STATUS_CODE_RETRIES",
    "Gateway",
    "cloud_names",
    "connect",
    "is_unreachable",
    "new_request_id",
    "translate_error",
]
