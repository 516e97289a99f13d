"""The floor for ``volimg stores``: openstacksdk connects and lists Glance's stores.

Nothing else: no CLI, no rendering, no import-methods request. The cloud comes from
OS_CLOUD and OS_CLIENT_CONFIG_FILE, as for the commands it is compared with.
"""

import openstack

connection = openstack.connect()
for store in connection.image.stores():
    print(store.id)
