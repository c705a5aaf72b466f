#!/usr/bin/env bash
# Builds, from Debian packages, the base images postcove's Dockerfile and
# docker-compose.yml name, and tags them with those very names, for a
# machine that cannot pull from a registry (CI here). With a registry none
# of this is needed: the same files pull the official images.
#
#   scripts/offline-images.sh [--force] [--refresh] [--list]
#
#   debian:bookworm-slim  debootstrap --variant=minbase bookworm
#   golang:1.26-bookworm  the same + ca-certificates + the Go toolchain of
#                         this machine (/usr/local/go, must be go1.26.x)
#   mariadb:10.11         the same + Debian's mariadb-server 10.11, with
#                         deploy/mariadb/{docker-entrypoint.sh,healthcheck.sh}
#                         honouring the official image's environment contract
#
# An image already present is skipped; --force re-imports them. The
# debootstrap trees and the .deb files are cached under $POSTCOVE_IMAGE_CACHE
# (default /var/cache/postcove/offline-images) so a rerun takes seconds;
# --refresh bootstraps the trees again. The Debian mirror is the one apt on
# this machine uses, or $DEBIAN_MIRROR. --list prints the image names.
#
# Needs root (debootstrap, chroot) and a running Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=bookworm
go_root=/usr/local/go
go_series=1.26
cache="${POSTCOVE_IMAGE_CACHE:-/var/cache/postcove/offline-images}"
force=0
refresh=0

# The names must match what the files reference (checked below).
img_debian="debian:bookworm-slim"
img_golang="golang:${go_series}-bookworm"
img_mariadb="mariadb:10.11"

die() { echo "offline-images: $*" >&2; exit 1; }
say() { echo "offline-images: $*"; }

while (($#)); do
	case "$1" in
	--force) force=1 ;;
	--refresh) refresh=1; force=1 ;;
	--list) printf '%s\n' "$img_debian" "$img_golang" "$img_mariadb"; exit 0 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done

# The files this script serves must name exactly these images, or CI would
# build one set and compose would ask a registry for another.
grep -q "GO_IMAGE=$img_golang\$" deploy/docker/Dockerfile || die "deploy/docker/Dockerfile no longer uses $img_golang: update img_golang here"
grep -q "RUNTIME_IMAGE=$img_debian\$" deploy/docker/Dockerfile || die "deploy/docker/Dockerfile no longer uses $img_debian: update img_debian here"
grep -q "image: $img_mariadb\$" docker-compose.yml || die "docker-compose.yml no longer uses $img_mariadb: update img_mariadb here"

[[ $(id -u) == 0 ]] || die "needs root (debootstrap and chroot): run it with sudo"
command -v docker >/dev/null || die "docker not found: install docker.io (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers at ${DOCKER_HOST:-/var/run/docker.sock}: start it (systemctl start docker, or dockerd &) and retry"

present() { docker image inspect "$1" >/dev/null 2>&1; }
if ((!force)) && present "$img_debian" && present "$img_golang" && present "$img_mariadb"; then
	say "all images present ($img_debian, $img_golang, $img_mariadb); --force rebuilds them"
	exit 0
fi

if ! command -v debootstrap >/dev/null; then
	say "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } ||
		die "could not install debootstrap (apt-get install debootstrap)"
fi

# mirror: $DEBIAN_MIRROR, else the first Debian archive apt uses here (one
# style or the other of sources.list), else deb.debian.org.
mirror() {
	if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
		echo "$DEBIAN_MIRROR"
		return
	fi
	local m
	m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -oE '(https?|file)://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)"
	echo "${m:-http://deb.debian.org/debian}"
}

# tree NAME PACKAGES: a cached debootstrap of $suite (minbase) with PACKAGES
# (comma separated) added; prints its path. A tree is used only once
# debootstrap finished (the .done stamp), and never removed while
# debootstrap's /proc or /sys mounts are still on it.
tree() {
	local name=$1 include=$2 dir="$cache/trees/$1"
	if ((refresh)) || [[ ! -f "$dir.done" ]]; then
		remove_tree "$dir"
		rm -f "$dir.done"
		mkdir -p "$cache/debs" "$cache/trees"
		say "debootstrap $suite ($name${include:+: $include}) from $(mirror) — a few minutes the first time" >&2
		if ! debootstrap --variant=minbase ${include:+--include="$include"} --cache-dir="$cache/debs" \
			"$suite" "$dir" "$(mirror)" >"$dir.log" 2>&1; then
			unmount_tree "$dir"
			tail -20 "$dir.log" >&2
			die "debootstrap of $name failed (log: $dir.log)"
		fi
		unmount_tree "$dir"
		# Like the official images: no package lists or .debs inside.
		rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
		touch "$dir.done"
	fi
	echo "$dir"
}

unmount_tree() {
	local m
	for m in proc sys dev/pts dev; do
		if mountpoint -q "$1/$m" 2>/dev/null; then umount -l "$1/$m" || true; fi
	done
}

remove_tree() {
	[[ -e "$1" ]] || return 0
	unmount_tree "$1"
	if grep -q " $1/" /proc/mounts; then
		die "$1 still has mounts: unmount them (grep $1 /proc/mounts) and retry"
	fi
	rm -rf --one-file-system "$1"
}

# import NAME TREE [EXTRA_ROOT PATHS...] -- CHANGES...: docker import of
# TREE, plus PATHS taken from EXTRA_ROOT, with Dockerfile-style changes.
import() {
	local name=$1 dir=$2
	shift 2
	local -a extra=() changes=()
	while (($#)) && [[ "$1" != -- ]]; do extra+=("$1"); shift; done
	shift
	for c in "$@"; do changes+=(--change "$c"); done
	# /dev, /proc and /sys are the container runtime's; device nodes in a
	# layer only trouble storage drivers such as fuse-overlayfs.
	tar --numeric-owner --one-file-system --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* \
		-C "$dir" -c . ${extra[@]:+"${extra[@]}"} | docker import "${changes[@]}" - "$name" >/dev/null
	say "built $name"
}

base_env="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT

if ((force)) || ! present "$img_debian"; then
	dir="$(tree minbase "")"
	import "$img_debian" "$dir" -- "ENV $base_env" 'CMD ["bash"]'
else
	say "$img_debian present"
fi

if ((force)) || ! present "$img_golang"; then
	[[ -x "$go_root/bin/go" ]] || die "no Go toolchain at $go_root (the golang image copies it)"
	go_version="$("$go_root/bin/go" env GOVERSION)"
	[[ "$go_version" == "go$go_series" || "$go_version" == go$go_series.* ]] ||
		die "$go_root is $go_version, but the image is $img_golang: install Go $go_series there"
	# The layout of the official image: GOPATH /go, open to any user.
	mkdir -p "$staging/go/bin" "$staging/go/src"
	chmod -R 1777 "$staging/go"
	dir="$(tree golang ca-certificates)"
	# `go mod download` runs inside docker build: trust what this machine
	# trusts (a local CA, e.g. of an intercepting egress proxy, sits in
	# /usr/local/share/ca-certificates), or module downloads fail TLS here
	# while they work on the host. They go to a directory of their own that
	# only Go is told about (SSL_CERT_DIR), so Debian's bundle, which the
	# runtime images copy, stays as Debian ships it. Certificates, no keys.
	extra_ca=/usr/local/share/postcove-build-ca
	rm -f "$dir"/usr/local/share/ca-certificates/*.crt
	chroot "$dir" update-ca-certificates --fresh >/dev/null
	rm -rf "${dir:?}$extra_ca"
	mkdir -p "$dir$extra_ca"
	if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
		cp /usr/local/share/ca-certificates/*.crt "$dir$extra_ca/"
		say "the golang image's Go also trusts this machine's local CAs: $(cd /usr/local/share/ca-certificates && echo ./*.crt)"
	fi
	import "$img_golang" "$dir" -C "$staging" ./go -C / "${go_root#/}" -- \
		"ENV PATH=/go/bin:$go_root/bin:${base_env#PATH=}" "ENV GOPATH=/go" "ENV GOLANG_VERSION=${go_version#go}" \
		"ENV GOTOOLCHAIN=local" "ENV SSL_CERT_DIR=/etc/ssl/certs:$extra_ca" "WORKDIR /go" 'CMD ["bash"]'
else
	say "$img_golang present"
fi

if ((force)) || ! present "$img_mariadb"; then
	dir="$(tree mariadb mariadb-server,mariadb-client)"
	# shellcheck disable=SC2016 # dpkg's format, not a shell expansion
	mariadb_version="$(chroot "$dir" dpkg-query -W -f='${Version}' mariadb-server)"
	[[ "$mariadb_version" == *:10.11.* || "$mariadb_version" == 10.11.* ]] ||
		die "Debian $suite ships mariadb-server $mariadb_version, not 10.11: the image would lie about its tag"
	# Debian's postinst initialised a datadir in the tree; the image must
	# ship it empty so a new volume gets a first start with the environment.
	rm -rf "${dir:?}"/var/lib/mysql/* "$dir"/var/lib/mysql/.[!.]*
	# Into the cached tree itself: docker import refuses a path twice.
	mkdir -p "$dir/docker-entrypoint-initdb.d"
	install -m 755 deploy/mariadb/docker-entrypoint.sh deploy/mariadb/healthcheck.sh "$dir/usr/local/bin/"
	import "$img_mariadb" "$dir" -- \
		"ENV $base_env" "ENV MARIADB_VERSION=$mariadb_version" "VOLUME /var/lib/mysql" "EXPOSE 3306" \
		'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["mariadbd"]'
else
	say "$img_mariadb present"
fi
