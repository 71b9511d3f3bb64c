#!/usr/bin/env bash
# tests/fresh/run.sh: the README's commands on a fresh machine. Builds a
# Debian 12 root file system with debootstrap, imports it as a podman
# image, and in a privileged container from it (as root, nothing but the
# minimal base system and the Go toolchain the README asks for) runs:
#
#   apt-get install git make     (what `git clone` and `make` themselves need)
#   git clone <this repository at HEAD>
#   make demo
#   make test
#
# It is not part of `make test`: debootstrap downloads ~60 MB and `make
# deps` then ~400 MB of packages, and the run takes 15-25 minutes on two
# cores on top of a normal `make test`. CI proves the same step cheaper:
# .ci/run runs .ci/deps (the one `make deps` runs) on a fresh CI machine,
# and tests/setup checks that .ci/run installs nothing by itself.
#
# The container test runs podman inside this container: its storage is
# vfs (/etc/containers/storage.conf), since overlay cannot stack on the
# container's own overlayfs.
#
# Needs root, podman (with runc), network access to deb.debian.org, and Go
# at /usr/local/go (bind-mounted read-only: the Go the README names).
# Usage: tests/fresh/run.sh [-k] [-d]
#   -k keeps the rootfs and the image; -d stops after make demo (make deps
#   and the demo only: the quick half, ~10 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
KEEP=0; DEMO_ONLY=0
for a in "$@"; do
	case "$a" in
	-k) KEEP=1 ;;
	-d) DEMO_ONLY=1 ;;
	*) echo "usage: tests/fresh/run.sh [-k] [-d]"; exit 2 ;;
	esac
done
MIRROR="${FRESH_MIRROR:-http://deb.debian.org/debian}"
IMAGE="localhost/forge-supervisor-fresh:bookworm"
ROOTFS="$(mktemp -d /tmp/forge-fresh.XXXXXX)"
NAME="forge-fresh-$$"

[ "$(id -u)" = 0 ] || { echo "tests/fresh/run.sh needs root"; exit 1; }
[ -x /usr/local/go/bin/go ] || { echo "tests/fresh/run.sh needs Go at /usr/local/go"; exit 1; }
command -v podman >/dev/null || { echo "tests/fresh/run.sh needs podman"; exit 1; }
command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends debootstrap; }

cleanup() {
	podman --runtime runc rm -f "$NAME" >/dev/null 2>&1 || true
	if [ "$KEEP" = 0 ]; then
		podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
		rm -rf "$ROOTFS" "$ROOTFS.bundle"
	else
		echo "kept $ROOTFS and $IMAGE"
	fi
}
trap cleanup EXIT

echo "== debootstrap bookworm (minbase) into $ROOTFS"
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >/dev/null
tar -C "$ROOTFS" -c . | podman import - "$IMAGE" >/dev/null

# The clone is of HEAD through git itself (a bundle of it), as a user
# would clone: nothing of this worktree's build outputs or caches comes
# along.
git -C "$REPO" bundle create -q "$ROOTFS.bundle" HEAD
# The network may need the host's local CA certificates (a proxy that
# intercepts TLS): they are trusted in the container too. They are the
# network's, not the machine's set-up.
CAS=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
	CAS=(-v /usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro)
fi
echo "== in a fresh container: git clone, make demo, make test"
start=$(date +%s)
podman --runtime runc run --name "$NAME" --privileged --cgroupns=host \
	--ulimit nofile="$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=32768:32768 \
	-v /usr/local/go:/usr/local/go:ro -v "$ROOTFS.bundle:/origin.bundle:ro" "${CAS[@]}" \
	-e PATH=/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin -e HOME=/root -e DEMO_ONLY="$DEMO_ONLY" \
	"$IMAGE" bash -euxc '
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		apt-get install -y -q --no-install-recommends git make ca-certificates
		update-ca-certificates >/dev/null
		mkdir -p /etc/containers
		printf "[storage]\ndriver = \"vfs\"\nrunroot = \"/run/containers/storage\"\ngraphroot = \"/var/lib/containers/storage\"\n" > /etc/containers/storage.conf
		git -c advice.detachedHead=false clone -q /origin.bundle /src
		cd /src
		make demo
		[ "$DEMO_ONLY" = 1 ] || make test
	'
echo "== green: README commands from a clean clone in $(( $(date +%s) - start ))s"
