#!/usr/bin/env bash
# A site's own certificate authority for MQTT over TLS, with nothing but openssl.
#
#   site-certs.sh ca      DIR [NAME]                  make the site CA (once per site)
#   site-certs.sh gateway DIR NAME_OR_IP...           the gateway's certificate, for the names and
#                                                     IP addresses devices connect to
#   site-certs.sh device  DIR DEVICE_ID [DAYS]        a device certificate (CN = the device ID)
#   site-certs.sh revoke  DIR DEVICE_ID               revoke a device's certificates; rewrites DIR/crl.pem
#   site-certs.sh crl     DIR                         rewrite DIR/crl.pem (do it before it expires: 30 days)
#
# DIR holds the CA's key (ca.key: keep it off the gateway if you can, it signs every device),
# its certificate (ca.crt: goes to the gateway as client_ca_file and to every device as the CA
# it trusts), the CA's records (index.txt, serial, issued/), gateway.crt + gateway.key, and
# devices/ID.crt + devices/ID.key. Keys are EC P-256, which every TLS stack here (rustls on the
# gateway, embedded-tls on the boards) speaks. A DAYS of -1 makes a certificate that has
# already expired (for tests).
#
# The gateway reads: cert_file = gateway.crt, key_file = gateway.key, client_ca_file = ca.crt,
# crl_file = crl.pem (see README "MQTT over TLS").
set -euo pipefail
umask 077
# openssl.cnf names the gateway's subjectAltName through the environment; every other use of
# the file needs the variable set too.
export SITE_SAN=${SITE_SAN:-DNS:unused}

die() { printf 'site-certs.sh: %s\n' "$*" >&2; exit 1; }
command -v openssl >/dev/null 2>&1 || die "openssl is missing (Debian: apt-get install openssl)"
[ $# -ge 2 ] || die "usage: site-certs.sh ca|gateway|device|revoke|crl DIR ... (see the top of this file)"
cmd=$1 dir=$2
shift 2

config() { # the CA's openssl configuration, written once
  [ -f "$dir/openssl.cnf" ] && return 0
  cat >"$dir/openssl.cnf" <<'EOF'
[ ca ]
default_ca = site

[ site ]
dir = .
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_days = 825
default_crl_days = 30
policy = any_name
unique_subject = no
copy_extensions = none

[ any_name ]
commonName = supplied

[ req ]
distinguished_name = req_name
prompt = no

[ req_name ]
CN = unused

[ site_ca ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ device ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ gateway ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $ENV::SITE_SAN
EOF
}

need_ca() {
  [ -f "$dir/ca.key" ] && [ -f "$dir/ca.crt" ] || die "no site CA in $dir: run 'site-certs.sh ca $dir' first"
  config
}

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign CSR CERT EXTENSIONS DAYS: the CA signs a request (negative DAYS: already expired)
sign() {
  local csr=$1 out=$2 ext=$3 days=$4 dates=()
  if [ "$days" -lt 0 ]; then
    dates=(-startdate "$(date -u -d '-2 days' +%Y%m%d%H%M%SZ)" -enddate "$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)")
  else
    dates=(-days "$days")
  fi
  (cd "$dir" && openssl ca -batch -config openssl.cnf -extensions "$ext" \
    -notext "${dates[@]}" -in "$csr" -out "$out" 2>/dev/null) \
    || die "openssl ca could not sign $out"
}

case "$cmd" in
  ca)
    name=${1:-site}
    mkdir -p "$dir/issued" "$dir/devices"
    [ -f "$dir/ca.key" ] && die "$dir already has a site CA (ca.key); refusing to replace it"
    config
    : >"$dir/index.txt"
    echo 1000 >"$dir/serial"
    echo 1000 >"$dir/crlnumber"
    new_key "$dir/ca.key"
    (cd "$dir" && openssl req -new -x509 -config openssl.cnf -extensions site_ca -key ca.key \
      -subj "/CN=$name site CA" -days 3650 -out ca.crt)
    chmod 0644 "$dir/ca.crt"
    "$0" crl "$dir"
    echo "site CA: $dir/ca.crt (key $dir/ca.key)"
    ;;
  gateway)
    [ $# -ge 1 ] || die "usage: site-certs.sh gateway DIR NAME_OR_IP..."
    need_ca
    san=
    for name in "$@"; do
      if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="${san:+,}IP:$name"; else san+="${san:+,}DNS:$name"; fi
    done
    new_key "$dir/gateway.key"
    openssl req -new -config "$dir/openssl.cnf" -key "$dir/gateway.key" -subj "/CN=$1" -out "$dir/gateway.csr"
    SITE_SAN=$san sign gateway.csr gateway.crt gateway 825
    rm -f "$dir/gateway.csr"
    chmod 0644 "$dir/gateway.crt"
    echo "gateway certificate: $dir/gateway.crt (key $dir/gateway.key) for $san"
    ;;
  device)
    [ $# -ge 1 ] || die "usage: site-certs.sh device DIR DEVICE_ID [DAYS]"
    need_ca
    id=$1 days=${2:-825}
    [[ $id =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "device ID $id: 1 to 64 of A-Z a-z 0-9 . _ -"
    mkdir -p "$dir/devices"
    new_key "$dir/devices/$id.key"
    openssl req -new -config "$dir/openssl.cnf" -key "$dir/devices/$id.key" -subj "/CN=$id" -out "$dir/devices/$id.csr"
    sign "devices/$id.csr" "devices/$id.crt" device "$days"
    rm -f "$dir/devices/$id.csr"
    chmod 0644 "$dir/devices/$id.crt"
    echo "device certificate: $dir/devices/$id.crt (key $dir/devices/$id.key)"
    ;;
  revoke)
    [ $# -eq 1 ] || die "usage: site-certs.sh revoke DIR DEVICE_ID"
    need_ca
    id=$1 revoked=0
    # Every valid certificate issued to CN=ID (index.txt, tab-separated: status, expiry,
    # revocation date (empty), serial, file, subject).
    for serial in $(awk -F'\t' -v s="/CN=$id" '$1 == "V" && $6 == s { print $4 }' "$dir/index.txt"); do
      (cd "$dir" && openssl ca -batch -config openssl.cnf -revoke "issued/$serial.pem" 2>/dev/null) \
        || die "cannot revoke serial $serial"
      revoked=$((revoked + 1))
    done
    [ "$revoked" -gt 0 ] || die "no valid certificate for $id in $dir/index.txt"
    "$0" crl "$dir"
    echo "revoked $revoked certificate(s) of $id; copy $dir/crl.pem to the gateway's crl_file and reload it"
    ;;
  crl)
    need_ca
    (cd "$dir" && openssl ca -batch -config openssl.cnf -gencrl -out crl.pem 2>/dev/null) || die "cannot write $dir/crl.pem"
    chmod 0644 "$dir/crl.pem"
    ;;
  *) die "unknown command $cmd: ca, gateway, device, revoke or crl" ;;
esac
