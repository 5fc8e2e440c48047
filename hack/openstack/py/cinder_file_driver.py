"""A Cinder volume backend for the test cloud: Cinder's own fake driver, with each volume a sparse file.

This machine has neither device-mapper (LVM) nor an NFS client, so no Cinder driver that stores
data runs here. Cinder's FakeLoggingVolumeDriver (its functional tests' backend) answers every
call; this class keeps its answers but gives each volume a file under `file_volume_dir`, so a
volume created from an image really receives the image (Cinder's image_utils downloads it from
Glance, checks its virtual size against the volume's, and converts it to raw), and extending or
deleting a volume changes or removes that file. Attachments stay fake, like the fake compute host
they are for.
"""

import os

from oslo_config import cfg

from cinder.tests import fake_driver

OPTS = [cfg.StrOpt("file_volume_dir", required=True, help="Directory holding one file per volume.")]


class FileVolumeDriver(fake_driver.FakeLoggingVolumeDriver):
    VERSION = "1.0.0"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(OPTS)
        self.backend_name = self.configuration.safe_get("volume_backend_name") or "files"

    def do_setup(self, context):
        os.makedirs(self.configuration.file_volume_dir, exist_ok=True)

    def local_path(self, volume, vg=None):
        return os.path.join(self.configuration.file_volume_dir, volume["name"])

    def _resize(self, volume, size_gib):
        with open(self.local_path(volume), "ab") as f:
            f.truncate(max(size_gib * 1024**3, f.tell()))

    def create_volume(self, volume):
        update = super().create_volume(volume)
        self._resize(volume, volume["size"])
        return update

    def copy_image_to_volume(self, context, volume, image_service, image_id, disable_sparse=False):
        super().copy_image_to_volume(context, volume, image_service, image_id, disable_sparse)
        # qemu-img writes a file of the image's virtual size: the volume keeps its own.
        self._resize(volume, volume["size"])

    def create_cloned_volume(self, volume, src_vol):
        self._resize(volume, volume["size"])

    def create_volume_from_snapshot(self, volume, snapshot):
        self._resize(volume, volume["size"])

    def extend_volume(self, volume, new_size):
        self._resize(volume, new_size)

    def delete_volume(self, volume):
        try:
            os.unlink(self.local_path(volume))
        except FileNotFoundError:
            pass
