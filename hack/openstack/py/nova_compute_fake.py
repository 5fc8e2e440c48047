"""Starts nova-compute with the fake virt driver under a node UUID that survives restarts.

The fake driver names its node `uuids.node_<nodename>` from oslo's uuidsentinel, which is random in
every process; Nova looks compute nodes up by that UUID, so a restarted fake host would try to
create its node again and refuse to start. Here the sentinel is a UUID derived from the name.
"""

import sys
import uuid

# First: nova.cmd.compute sets up Nova's threading backend and must come before any other import.
from nova.cmd.compute import main  # isort: skip

from nova.virt import fake  # noqa: E402

_NAMESPACE = uuid.UUID("6b0b8a5e-6f3c-4d7e-9d2a-1f0c6e1b6a40")


class _StableSentinels:
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return str(uuid.uuid5(_NAMESPACE, name))


fake.uuids = _StableSentinels()

if __name__ == "__main__":
    sys.exit(main())
