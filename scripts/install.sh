#!/usr/bin/env bash
# Installs berth on a systemd host: release binaries, berthd.service, a tmpfiles.d entry, an example
# /etc/berth/berthd.yaml (kept when one exists), shell completions and man pages.
#
#   sudo scripts/install.sh                      # build (cargo, release) and install under /usr/local
#   PREFIX=/usr DESTDIR=/tmp/pkgroot scripts/install.sh     # stage for a package
#   BIN_DIR=target/debug scripts/install.sh      # install already built binaries (no build)
#
# PREFIX (default /usr/local): binaries in $PREFIX/bin, the unit in $PREFIX/lib/systemd/system
# (systemd looks there for /usr and /usr/local alike), tmpfiles in $PREFIX/lib/tmpfiles.d, docs in
# $PREFIX/share. DESTDIR is prepended to every path written; /etc is never under PREFIX.
# Then: systemctl daemon-reload && systemctl enable --now berthd
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINS=(berthd berth berth-shim berth-runtime)
if [ -z "${BIN_DIR:-}" ]; then
  target=${CARGO_TARGET_DIR:-target}
  # The shim and runtime have size-tuned profiles of their own (see Cargo.toml).
  cargo build --release --locked -p berth-agent --bins
  cargo build --profile shim --locked -p berth-shim
  cargo build --profile runtime --locked -p berth-runtime
  src() { case $1 in berth-shim) echo "$target/shim/$1";; berth-runtime) echo "$target/runtime/$1";; *) echo "$target/release/$1";; esac; }
else
  src() { echo "$BIN_DIR/$1"; }
fi
bindir=$PREFIX/bin
unitdir=$PREFIX/lib/systemd/system
tmpfilesdir=$PREFIX/lib/tmpfiles.d
share=$PREFIX/share
# A running berthd or shim keeps its binary open: write beside it, then rename over it (an upgrade
# in place, as package managers do).
put() { # put MODE SRC DEST
  install -D -m "$1" "$2" "$3.new.$$"
  mv -f "$3.new.$$" "$3"
}
for b in "${BINS[@]}"; do
  [ -x "$(src "$b")" ] || { echo "install.sh: $(src "$b") is missing (build it, or unset BIN_DIR)" >&2; exit 1; }
  put 755 "$(src "$b")" "$DESTDIR$bindir/$b"
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
sed "s|@BINDIR@|$bindir|g" contrib/systemd/berthd.service > "$tmp/berthd.service"
put 644 "$tmp/berthd.service" "$DESTDIR$unitdir/berthd.service"
put 644 contrib/systemd/berth.conf "$DESTDIR$tmpfilesdir/berth.conf"
put 644 contrib/berthd.yaml "$DESTDIR$share/doc/berth/berthd.yaml.example"
if [ ! -e "$DESTDIR/etc/berth/berthd.yaml" ]; then
  put 644 contrib/berthd.yaml "$DESTDIR/etc/berth/berthd.yaml"
fi
install -d -m 755 "$DESTDIR/etc/berth/containers"
"$(src berth)" generate-docs "$tmp/share"
(cd "$tmp/share" && find . -type f) | while read -r f; do
  put 644 "$tmp/share/$f" "$DESTDIR$share/$f"
done
echo "installed berth under ${DESTDIR:-}$PREFIX; next: systemctl daemon-reload && systemctl enable --now berthd" >&2
