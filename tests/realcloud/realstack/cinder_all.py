"""Cinder API, scheduler and volume service in ONE process, talking over ``fake://``.

Usage: ``python -m realstack.cinder_all --config-file cinder.conf``

Cinder's own functional tests run the three services in one process with
oslo.messaging's in-memory ``fake`` transport (cinder/tests/functional/
functional_helpers.py starts ``volume``, ``scheduler`` and a ``WSGIService``). We do
the same instead of running RabbitMQ: ~190 MB instead of ~760 MB, up in ~2 s. The
steps below mirror cinder/cmd/{api,scheduler,volume}.py; the difference is one
``ServiceLauncher`` holding all three services instead of one process each. One
crash stops all three, which the stack's health check notices.
"""

from cinder import monkey_patch

monkey_patch.patch()  # eventlet first, as every cinder/cmd/*.py does

import logging as python_logging  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402

import os_brick  # noqa: E402
from cinder import i18n  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_log import log as logging  # noqa: E402
from oslo_privsep import priv_context  # noqa: E402
from oslo_service import service as oslo_service  # noqa: E402

i18n.enable_lazy()

from cinder import objects, rpc, service, utils, version  # noqa: E402
from cinder.common import config, constants  # noqa: E402

CONF = cfg.CONF
LOG = logging.getLogger("realstack.cinder_all")


def main() -> None:
    objects.register_all()
    CONF(sys.argv[1:], project="cinder", version=version.version_string())
    config.set_middleware_defaults()
    logging.setup(CONF, "cinder")
    python_logging.captureWarnings(True)
    # cinder-volume does this; [privsep_osbrick]/[cinder_sys_admin] helper_command in
    # cinder.conf overrides the sudo prefix (we run as root, without rootwrap).
    priv_context.init(root_helper=shlex.split(utils.get_root_helper()))
    os_brick.setup(CONF)
    rpc.init(CONF)

    backends = [b for b in CONF.enabled_backends or [] if b]
    if not backends:
        sys.exit("cinder.conf: enabled_backends is empty")

    # Volume services first: the scheduler's init_host_with_rpc asks for their
    # capabilities and waits (up to scheduler_driver_init_wait_time) for an answer.
    services = []
    for backend in backends:
        services.append(
            service.Service.create(
                host=f"{CONF.host}@{backend}",
                service_name=backend,
                binary=constants.VOLUME_BINARY,
                coordination=True,
            )
        )
    services.append(service.Service.create(binary=constants.SCHEDULER_BINARY))
    services.append(service.WSGIService("osapi_volume"))

    launcher = oslo_service.ServiceLauncher(CONF, restart_method="mutate")
    for svc in services:
        launcher.launch_service(svc)
    LOG.info("realstack: cinder api+scheduler+volume(%s) started", ",".join(backends))
    launcher.wait()


if __name__ == "__main__":
    main()
