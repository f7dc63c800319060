#!/usr/bin/env bash
# Build the dagentic sandbox image (dagentic-sandbox:latest) WITHOUT a container registry:
# debootstrap a minimal Debian bookworm with python3, numpy and pandas from the Debian
# mirror apt already uses, strip it, and `docker import` it. The result is equivalent to
# sandbox/image/Dockerfile (see the contract there).
#
# Idempotent: the image carries a hash of this script and the Dockerfile (label
# dagentic.sandbox.recipe, tag dagentic-sandbox:recipe-<hash>); when an image with the
# current hash exists, nothing is built.
#
# Needs root (debootstrap), docker, debootstrap. Environment:
#   DAGENTIC_DEBIAN_MIRROR    mirror to debootstrap from (default: apt's bookworm mirror)
#   DAGENTIC_SANDBOX_BUILDER  debootstrap (default) | dockerfile (docker build, needs a registry)
#   DAGENTIC_SANDBOX_FORCE=1  rebuild even if the current image exists
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
IMAGE=dagentic-sandbox
LABEL=dagentic.sandbox.recipe
SUITE=bookworm
PACKAGES=python3,python3-numpy,python3-pandas # minbase already has coreutils (sleep)

say() { echo "build.sh: $*"; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed (scripts/setup.sh installs docker.io)"
docker info >/dev/null 2>&1 || die "cannot talk to the docker daemon ('docker info' fails); is dockerd running?"

hash=$(cd "$here" && cat build.sh Dockerfile | sha256sum | cut -c1-64)
tag="$IMAGE:recipe-${hash:0:12}"

prune() { # drop the tags of older recipes (an image a container still uses stays, for now)
  docker images --format '{{.Repository}}:{{.Tag}}' "$IMAGE" | grep -F "$IMAGE:recipe-" \
    | grep -vxF "$tag" | xargs -r docker rmi >/dev/null 2>&1 || true
}

current() { # does this image have the current recipe?
  [ "$(docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null)" = "$hash" ]
}

if [ "${DAGENTIC_SANDBOX_FORCE:-0}" != 1 ]; then
  if current "$IMAGE:latest"; then
    say "$IMAGE:latest is up to date (recipe ${hash:0:12}); nothing to build"
    prune
    exit 0
  fi
  if current "$tag"; then
    docker tag "$tag" "$IMAGE:latest"
    say "$IMAGE:latest now points at $tag (recipe ${hash:0:12}); nothing to build"
    prune
    exit 0
  fi
fi

# One build at a time per checkout; whoever waited finds the image built.
mkdir -p "$repo/.dagentic"
exec 9>"$repo/.dagentic/sandbox-image.lock"
if ! flock -n 9; then
  say "another build is running; waiting for it"
  flock 9
  if [ "${DAGENTIC_SANDBOX_FORCE:-0}" != 1 ] && current "$IMAGE:latest"; then
    say "$IMAGE:latest was built meanwhile (recipe ${hash:0:12})"; exit 0
  fi
fi

start=$SECONDS
previous=$(docker image inspect --format '{{.Id}}' "$IMAGE:latest" 2>/dev/null || true)
builder=${DAGENTIC_SANDBOX_BUILDER:-debootstrap}

finish() {
  docker tag "$tag" "$IMAGE:latest"
  prune
  # and the image latest pointed at before, if nothing names it any more
  if [ -n "$previous" ] && [ "$(docker image inspect --format '{{len .RepoTags}}' "$previous" 2>/dev/null)" = 0 ]; then
    docker rmi "$previous" >/dev/null 2>&1 || true
  fi
  say "built $IMAGE:latest = $tag in $((SECONDS - start)) s," \
      "$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
}

case "$builder" in
  dockerfile)
    say "docker build $here (recipe ${hash:0:12})"
    docker build --label "$LABEL=$hash" -t "$tag" "$here" || die "docker build failed"
    finish
    exit 0
    ;;
  debootstrap) ;;
  *) die "DAGENTIC_SANDBOX_BUILDER must be 'debootstrap' or 'dockerfile', not '$builder'" ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "build.sh: error: building $tag with debootstrap needs root: run as root" \
       "(or DAGENTIC_SANDBOX_BUILDER=dockerfile, with a registry)" >&2
  exit 2
fi
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

# The Debian mirror apt uses for bookworm: one-line sources (*.list) and deb822 (*.sources).
apt_mirror() {
  local f files=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do [ -f "$f" ] && files+=("$f"); done
  [ ${#files[@]} -gt 0 ] && awk -v suite="$SUITE" '
    $1 == "deb" {
      i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }  # skip [options]
      if ($(i + 1) == suite) { print $i; exit }
    }' "${files[@]}"
  files=()
  for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && files+=("$f"); done
  [ ${#files[@]} -gt 0 ] && awk -v suite="$SUITE" '
    function flush() {
      if (deb && enabled && hassuite && uri != "") { print uri; found = 1; exit }
      deb = 0; enabled = 1; hassuite = 0; uri = ""
    }
    BEGIN { enabled = 1 }
    FNR == 1 { flush() }
    /^[ \t]*$/ { flush(); next }
    /^#/ { next }
    tolower($1) == "types:"   { for (j = 2; j <= NF; j++) if ($j == "deb") deb = 1 }
    tolower($1) == "enabled:" { enabled = (tolower($2) != "no") }
    tolower($1) == "suites:"  { for (j = 2; j <= NF; j++) if ($j == suite) hassuite = 1 }
    tolower($1) == "uris:"    { uri = $2 }
    END { if (!found) flush() }' "${files[@]}"
  return 0
}
mirror=${DAGENTIC_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(apt_mirror | awk '/^(https?|file):\/\// { print; exit }') || true
fi
[ -n "$mirror" ] || die "no '$SUITE' Debian mirror found in /etc/apt/sources.list{,.d/*}; set DAGENTIC_DEBIAN_MIRROR=<url>"

# debootstrap does not read apt.conf: pass apt's proxy on, if it has one.
if [ -z "${http_proxy:-}" ] && command -v apt-config >/dev/null; then
  eval "$(apt-config shell http_proxy Acquire::http::Proxy https_proxy Acquire::https::Proxy)"
  if [ -n "${http_proxy:-}" ]; then export http_proxy; say "using apt's http proxy $http_proxy"; fi
  if [ -n "${https_proxy:-}" ]; then export https_proxy; fi
fi

# on disk, not in a RAM /tmp: the rootfs is ~400 MB before stripping
rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/dagentic-sandbox-rootfs.XXXXXX")
cleanup() {
  # debootstrap mounts proc/sys inside the target; never rm -rf through a mount.
  awk -v r="$rootfs" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r \
    | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$rootfs" "$rootfs.log"
}
trap cleanup EXIT

say "debootstrap --variant=minbase $SUITE from $mirror with $PACKAGES (into $rootfs)"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" \
     >"$rootfs.log" 2>&1; then
  tail -n 30 "$rootfs.log" >&2
  [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
  rm -f "$rootfs.log"
  die "debootstrap failed (mirror $mirror)"
fi
rm -f "$rootfs.log"
say "debootstrap done after $((SECONDS - start)) s"

say "stripping apt lists, caches, docs, man pages, locales and package tests"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
       "$rootfs"/var/log/* "$rootfs"/usr/share/man "$rootfs"/usr/share/info \
       "$rootfs"/usr/share/locale "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda \
       "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/root/.cache "$rootfs"/debootstrap
# keep the licences (copyright files), drop the rest of /usr/share/doc
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
# the test suites of numpy and pandas (not imported by them; `pandas.test()` goes)
find "$rootfs/usr/lib/python3/dist-packages" -depth -type d -name tests \
     \( -path '*/numpy/*' -o -path '*/pandas/*' \) -exec rm -rf '{}' +
# debootstrap copied the host's network identity; docker provides these at run time
for f in hostname resolv.conf; do rm -f "$rootfs/etc/$f"; : >"$rootfs/etc/$f"; done
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
# /work: sticky and world-writable like /tmp, so that any uid the runtime picks can write
# there, also when a tmpfs is mounted on it (docker copies the image directory's mode
# onto the tmpfs, but not its owner)
mkdir -p "$rootfs/work" && chown 65534:65534 "$rootfs/work" && chmod 1777 "$rootfs/work"

say "checking python3 in the rootfs"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1 chroot "$rootfs" /usr/bin/python3 -c 'import numpy, pandas; print("  python", __import__("sys").version.split()[0], "numpy", numpy.__version__, "pandas", pandas.__version__)' \
  || die "python3 cannot import numpy and pandas in the built rootfs"
[ -x "$rootfs/bin/sleep" ] || die "coreutils (sleep) missing from the rootfs"
grep -q '^nobody:x:65534:65534:' "$rootfs/etc/passwd" || die "no nobody (65534:65534) user in the rootfs"

say "docker import -> $tag"
tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
  | docker import \
      --change "LABEL $LABEL=$hash" \
      --change 'LABEL org.opencontainers.image.title=dagentic-sandbox' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV HOME=/work' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
      --change 'ENV PYTHONUNBUFFERED=1' \
      --change 'WORKDIR /work' \
      --change 'USER 65534:65534' \
      --change 'CMD ["python3"]' \
      --message "dagentic sandbox: debootstrap $SUITE minbase + $PACKAGES" \
      - "$tag" >/dev/null \
  || die "docker import failed"
finish
