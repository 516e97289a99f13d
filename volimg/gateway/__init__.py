"""The gateway, moving from one module to a package (the split follows)."""

from volimg.gateway.glance import (
    CONNECT_RETRIES,
    DEFAULT_HTTP_TIMEOUT,
    IMAGE_PAGE,
    MESSAGES_FILTER_MICROVERSION,
    MESSAGES_MICROVERSION,
    NO_RETRY,
    STATUS_CODE_RETRIES,
    Gateway,
    cloud_names,
    connect,
    new_request_id,
    translate_error,
)

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
    "new_request_id",
    "translate_error",
]
