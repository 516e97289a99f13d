"""The floor for ``volimg stores``: openstacksdk connects and lists Glance's stores.

Nothing else: no CLI, no rendering. The cloud comes from OS_CLOUD and
OS_CLIENT_CONFIG_FILE, as for the commands it is compared with. With
``--import-methods`` it also sends volimg's second request, ``GET /v2/info/import``
(the "copy-image: enabled" line), so that bench/run.py can tell what volimg's start-up
costs from what its extra request costs.
"""

import sys

import openstack

connection = openstack.connect()
for store in connection.image.stores():
    print(store.id)
if "--import-methods" in sys.argv[1:]:
    print(connection.image.get("/info/import").json()["import-methods"]["value"])
