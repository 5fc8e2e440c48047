#!/usr/bin/env python3
"""Assemble a one-layer OCI image archive from files on this machine.

No registry and no Docker engine are needed: the archive is an OCI image layout
in a tar file that `ctr images import` accepts under the image's real name.

  oci_image.py --name registry.k8s.io/pause:3.10.1 --out pause.tar \
      --file /path/to/pause:/pause --entrypoint /pause \
      [--host-binary /usr/sbin/xtables-nft-multi:/usr/sbin/xtables-nft-multi] \
      [--symlink /usr/sbin/iptables:xtables-nft-multi] [--env K=V] [--workdir /]

--host-tree copies a host directory (e.g. iptables' extension modules) likewise.
--host-binary copies a dynamically linked host binary together with every
shared library `ldd` lists for it, so the image runs it without a base image.
Layers are written with fixed timestamps and owners, so the same inputs give
the same digest.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

FIXED_MTIME = 0


def shared_libraries(binary):
    """Paths of the shared libraries (and loader) a host binary needs."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if out.returncode != 0:
        return []  # static binary
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            libs.append(parts[2])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


class Layer:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.seen = set()

    def _parents(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.seen:
                self.seen.add(d)
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = FIXED_MTIME
                self.tar.addfile(info)

    def add_file(self, src, dest, mode=None):
        dest = dest.strip("/")
        if dest in self.seen:
            return
        self._parents(dest)
        self.seen.add(dest)
        with open(src, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo(dest)
        info.size = len(data)
        info.mode = mode if mode is not None else (os.stat(src).st_mode & 0o7777)
        info.mtime = FIXED_MTIME
        self.tar.addfile(info, io.BytesIO(data))

    def add_dir(self, dest, mode=0o755):
        dest = dest.strip("/")
        self._parents(dest + "/x")

    def add_symlink(self, dest, target):
        dest = dest.strip("/")
        if dest in self.seen:
            return
        self._parents(dest)
        self.seen.add(dest)
        info = tarfile.TarInfo(dest)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        info.mtime = FIXED_MTIME
        self.tar.addfile(info)

    def add_host_binary(self, src, dest):
        self.add_file(src, dest)
        for lib in shared_libraries(src):
            self.add_file(os.path.realpath(lib), lib)

    def add_host_tree(self, root):
        """Every file under a host directory, at the same path, with the libraries each needs
        (for plugins that are dlopen()ed and so invisible to ldd on the main binary)."""
        for dirpath, _, filenames in os.walk(root):
            for f in sorted(filenames):
                path = os.path.join(dirpath, f)
                if os.path.islink(path):
                    self.add_symlink(path, os.readlink(path))
                else:
                    self.add_host_binary(path, path)

    def finish(self):
        self.tar.close()
        return self.buf.getvalue()


def blob(tar, data):
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    info.mtime = FIXED_MTIME
    tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--file", action="append", default=[], help="SRC:DEST")
    p.add_argument("--host-binary", action="append", default=[], help="SRC:DEST")
    p.add_argument("--host-tree", action="append", default=[], help="DIR")
    p.add_argument("--symlink", action="append", default=[], help="DEST:TARGET")
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--entrypoint", nargs="*", default=None)
    p.add_argument("--cmd", nargs="*", default=None)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default="/")
    p.add_argument("--user", default="")
    args = p.parse_args()

    layer = Layer()
    for d in args.dir:
        layer.add_dir(d)
    for spec in args.file:
        src, dest = spec.split(":", 1)
        layer.add_file(src, dest)
    for spec in args.host_binary:
        src, dest = spec.split(":", 1)
        layer.add_host_binary(src, dest)
    for root in args.host_tree:
        layer.add_host_tree(root)
    for spec in args.symlink:
        dest, target = spec.split(":", 1)
        layer.add_symlink(dest, target)
    raw = layer.finish()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    compressed = gzip.compress(raw, mtime=0)

    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + args.env
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": env, "WorkingDir": args.workdir},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "nestplane hack/lib/oci_image.py"}],
    }
    if args.entrypoint is not None:
        config["config"]["Entrypoint"] = args.entrypoint
    if args.cmd is not None:
        config["config"]["Cmd"] = args.cmd
    if args.user:
        config["config"]["User"] = args.user
    config_bytes = json.dumps(config, sort_keys=True).encode()

    with tarfile.open(args.out, "w") as tar:
        config_digest = blob(tar, config_bytes)
        layer_digest = blob(tar, compressed)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer_digest, "size": len(compressed)}],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = blob(tar, manifest_bytes)
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": args.name,
                                "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[-1]},
            }],
        }
        for name, data in (("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
                           ("index.json", json.dumps(index, sort_keys=True).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
