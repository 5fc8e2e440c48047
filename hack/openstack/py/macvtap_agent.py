"""Starts neutron-macvtap-agent so that its forked worker gets its own privsep daemon.

The agent starts a privsep daemon in the parent process and then forks its worker (oslo.service's
threading backend). The worker inherits the parent's privsep channel and waits forever for replies
that go to the parent, so the agent never reports alive. After the fork, the child drops every
privsep context's channel; its first privileged call then starts a daemon of its own.
"""

import gc
import os
import sys

from oslo_privsep import priv_context


def _drop_privsep_channels():
    for obj in gc.get_objects():
        if isinstance(obj, priv_context.PrivContext) and getattr(obj, "channel", None) is not None:
            obj.channel = None


os.register_at_fork(after_in_child=_drop_privsep_channels)

from neutron.cmd.plugins.macvtap_neutron_agent import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
