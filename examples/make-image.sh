#!/usr/bin/env bash
# Builds a small busybox image as an OCI archive (what `image_file:` takes), offline: busybox-static
# from the host, packed with umoci. usage: examples/make-image.sh OUT.tar [TAG]
set -euo pipefail
out=${1:?usage: make-image.sh OUT.tar [TAG]}
tag=${2:-latest}
bb=$(command -v busybox || true)
[ -n "$bb" ] && file -L "$bb" 2>/dev/null | grep -q static || bb=/bin/busybox
[ -x "$bb" ] || { echo "make-image.sh: busybox-static is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/berth-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
umoci init --layout "$work/oci"
umoci new --image "$work/oci:$tag"
umoci unpack --image "$work/oci:$tag" "$work/bundle" >/dev/null
R=$work/bundle/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/www" "$R/tmp" "$R/root"
chmod 1777 "$R/tmp"
cp "$bb" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$R/etc/passwd"
printf 'root:x:0:\nwww:x:33:\nnogroup:x:65534:\n' > "$R/etc/group"
printf '<h1>hello from berth</h1>\n' > "$R/www/index.html"
umoci repack --image "$work/oci:$tag" "$work/bundle" >/dev/null
umoci config --image "$work/oci:$tag" --config.cmd /bin/sh --config.env PATH=/bin \
  --config.workingdir / --config.label org.opencontainers.image.title=berth-busybox
umoci gc --layout "$work/oci"
mkdir -p "$(dirname "$out")"
tar -C "$work/oci" -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
