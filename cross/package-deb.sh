#!/usr/bin/env bash
# Builds the telemetry-gateway .deb for one ARM target from an already cross-built binary, with
# dpkg-deb from a staged tree (no extra tools). Called by cross/build.sh.
#
#   bash cross/package-deb.sh <rust target> <telemetry-gateway binary> <output dir>
#
# Environment: DEB_REVISION (default 1), DEB_MAINTAINER, SOURCE_DATE_EPOCH (default: the last
# commit's time, so rebuilding the same commit gives the same file dates).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here="$root/cross/debian"
target=${1:?usage: package-deb.sh <rust target> <gateway binary> <output dir>}
binary=${2:?gateway binary}
out=${3:?output dir}

case "$target" in
  aarch64-unknown-linux-gnu) arch=arm64 tools=aarch64-linux-gnu syscall_archs="native" qemu=qemu-aarch64 ;;
  armv7-unknown-linux-gnueabihf) arch=armhf tools=arm-linux-gnueabihf syscall_archs="native arm" qemu=qemu-arm ;;
  *) echo "package-deb.sh: no Debian architecture for $target" >&2; exit 2 ;;
esac
[ -f "$binary" ] || { echo "package-deb.sh: $binary is missing" >&2; exit 1; }

version=$(cd "$root" && cargo pkgid -p gateway | sed 's/.*[#@]//')
deb_version="$version-${DEB_REVISION:-1}"
maintainer=${DEB_MAINTAINER:-"IoT gateway team <gateway@example.invalid>"}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)

# Depends from the binary's dynamic section: every library must map to a package.
needed=$("$tools-objdump" -p "$binary" | awk '$1 == "NEEDED" { print $2 }')
symbols=$("$tools-objdump" -T "$binary")
depends=()
libc=no libgcc=no
for lib in $needed; do
  case "$lib" in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux-*) libc=yes ;;
    libgcc_s.so.*) libgcc=yes ;;
    *) echo "package-deb.sh: $binary needs $lib: add its Debian package here" >&2; exit 1 ;;
  esac
done
max_version() { grep -o "$1[0-9.]*" | sed "s/^$1//" | sort -V | tail -n 1; }
libc_min=$(max_version GLIBC_ <<<"$symbols")
# Packed relative relocations (cross/cargo-config.toml) need glibc 2.36's loader; the binary
# says so with a version reference, not a versioned symbol.
if "$tools-objdump" -p "$binary" | grep -q GLIBC_ABI_DT_RELR; then
  libc_min=$(printf '%s\n2.36\n' "$libc_min" | sort -V | tail -n 1)
fi
[ $libc = yes ] && depends+=("libc6 (>= $libc_min)")
[ $libgcc = yes ] && depends+=("libgcc-s1 (>= $(max_version GCC_ <<<"$symbols"))")
# systemd: the unit, systemd-sysusers in postinst; ca-certificates: TLS to AWS.
depends+=(systemd ca-certificates)
depends_line=$(IFS=,; echo "${depends[*]}" | sed 's/,/, /g')

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/etc/telemetry-gateway" \
  "$stage/usr/lib/systemd/system" "$stage/usr/lib/sysusers.d" \
  "$stage/usr/share/doc/telemetry-gateway" "$stage/usr/share/man/man1" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d"
install -m 0755 "$binary" "$stage/usr/bin/telemetry-gateway"

# The man page and the shell completions come from the binary's own CLI definition (hidden
# commands generate-man and completions), so they match its --help: run it natively if this
# machine can, else under qemu-user with the target's glibc.
if "$binary" --version >/dev/null 2>&1; then
  run=("$binary")
else
  run=("$qemu" -L "/usr/$tools" "$binary")
fi
"${run[@]}" generate-man "$stage/usr/share/man/man1" >/dev/null
gzip -9n "$stage/usr/share/man/man1/telemetry-gateway.1"
"${run[@]}" completions bash >"$stage/usr/share/bash-completion/completions/telemetry-gateway"
"${run[@]}" completions zsh >"$stage/usr/share/zsh/vendor-completions/_telemetry-gateway"
"${run[@]}" completions fish >"$stage/usr/share/fish/vendor_completions.d/telemetry-gateway.fish"
chmod 0644 "$stage/usr/share/man/man1/telemetry-gateway.1.gz" \
  "$stage/usr/share/bash-completion/completions/telemetry-gateway" \
  "$stage/usr/share/zsh/vendor-completions/_telemetry-gateway" \
  "$stage/usr/share/fish/vendor_completions.d/telemetry-gateway.fish"

# The packaged configuration: the commented defaults `gateway generate-config` prints, with the
# two settings a service needs. Every substitution must hit, or the defaults file changed.
config="$stage/etc/telemetry-gateway/gateway.toml"
{
  echo "# /etc/telemetry-gateway/gateway.toml: configuration of the telemetry-gateway service."
  echo "# A conffile: your changes are kept on upgrades. Apply them with"
  echo "# \`sudo systemctl restart telemetry-gateway\`. Defaults are as printed by"
  echo "# \`telemetry-gateway generate-config\`, except data_dir and log_format below."
  echo "#"
  cat "$root/gateway/src/default_config.toml"
} >"$config"
substitute() {
  grep -qxF "$1" "$config" || { echo "package-deb.sh: '$1' not in gateway/src/default_config.toml" >&2; exit 1; }
  sed -i "s|^$1\$|$2|" "$config"
}
substitute '# data_dir = "/var/lib/telemetry-gateway"' \
  'data_dir = "/var/lib/telemetry-gateway"   # = the unit'"'"'s StateDirectory'
substitute 'log_format = "text"' 'log_format = "journald"'
chmod 0644 "$config"

sed "s/@SYSCALL_ARCHITECTURES@/$syscall_archs/" "$here/telemetry-gateway.service" \
  >"$stage/usr/lib/systemd/system/telemetry-gateway.service"
install -m 0644 "$here/telemetry-gateway.sysusers" "$stage/usr/lib/sysusers.d/telemetry-gateway.conf"
install -m 0644 "$here/copyright" "$here/README.Debian" "$stage/usr/share/doc/telemetry-gateway/"
# What an external broker must enforce (README "External broker mode"), as mosquitto files.
install -d -m 0755 "$stage/usr/share/doc/telemetry-gateway/examples/mosquitto"
install -m 0644 "$root/gateway/deploy/mosquitto/mosquitto.conf" "$root/gateway/deploy/mosquitto/mosquitto.acl" \
  "$stage/usr/share/doc/telemetry-gateway/examples/mosquitto/"
# The site CA script of README "MQTT over TLS" (openssl).
install -d -m 0755 "$stage/usr/share/doc/telemetry-gateway/examples/tls"
install -m 0755 "$root/gateway/deploy/tls/site-certs.sh" "$stage/usr/share/doc/telemetry-gateway/examples/tls/"
# Prometheus alerting rules and the Grafana dashboard (README "Metrics").
install -d -m 0755 "$stage/usr/share/telemetry-gateway/prometheus" "$stage/usr/share/telemetry-gateway/grafana"
install -m 0644 "$root/gateway/deploy/prometheus/alerts.yml" "$stage/usr/share/telemetry-gateway/prometheus/"
install -m 0644 "$root/gateway/deploy/grafana/gateway.json" "$stage/usr/share/telemetry-gateway/grafana/"
{
  echo "telemetry-gateway ($deb_version) unstable; urgency=medium"
  echo
  echo "  * Built from commit $commit."
  echo
  echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$stage/usr/share/doc/telemetry-gateway/changelog.Debian.gz"
chmod 0644 "$stage/usr/share/doc/telemetry-gateway/changelog.Debian.gz"

install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"
echo /etc/telemetry-gateway/gateway.toml >"$stage/DEBIAN/conffiles"
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$deb_version/" -e "s/@ARCH@/$arch/" -e "s/@MAINTAINER@/$maintainer/" \
  -e "s/@INSTALLED_SIZE@/$installed_size/" -e "s/@DEPENDS@/$depends_line/" \
  "$here/control.in" >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb="$out/telemetry-gateway_${deb_version}_$arch.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
