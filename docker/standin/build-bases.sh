#!/usr/bin/env bash
# Stand-in base images for a host that reaches Debian's package mirror but no image registry.
#
#   docker/standin/build-bases.sh            # as root, with debootstrap and a running Docker engine
#
# One Debian bookworm root file system (debootstrap: Python 3.11 with venv, PostgreSQL 15, procps),
# imported with `docker import` as recdistill-standin/bookworm. The project image takes it as its
# base through the build argument PYTHON_IMAGE, and docker/compose.standin.yaml runs PostgreSQL from
# it; everywhere else the official python and postgres images stay the defaults. Idempotent: an image
# that exists is kept (delete it to rebuild).
set -euo pipefail

image="${STANDIN_IMAGE:-recdistill-standin/bookworm:latest}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image exists"
  exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
# The mirror is the one debootstrap defaults to; set DEBOOTSTRAP_MIRROR to use another.
debootstrap --variant=minbase --include=python3,python3-venv,postgresql-15,procps,ca-certificates \
  bookworm "$rootfs" ${DEBOOTSTRAP_MIRROR:+"$DEBOOTSTRAP_MIRROR"}
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
# The host's own trust anchors (e.g. the CA of a TLS-inspecting proxy in front of PyPI and Maven
# Central), so builds on this base reach what the host reaches; Java's store takes them up when the
# project image installs its JRE. pip is told to use the system store rather than its own bundle.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["bash"]' - "$image"
docker image ls "$image"
