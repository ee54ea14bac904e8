#!/usr/bin/env bash
# Development certificates for DAO's TLS listeners (never for production):
# a CA, a server certificate for localhost, 127.0.0.1, ::1 and *.dao.test,
# and a client certificate for mTLS, all signed by that CA (ECDSA P-256).
#
#   bash scripts/dev-certs.sh configs/certs     # then: dao -c configs/tls.toml
#   curl --cacert configs/certs/ca.pem https://localhost:8443/
#   curl --cacert configs/certs/ca.pem --cert configs/certs/client.pem \
#        --key configs/certs/client.key https://localhost:8443/
#
# Writes into DIR: ca.pem ca.key server.pem server.key client.pem client.key
# (existing files are replaced). Needs openssl.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
dir=$1
mkdir -p "$dir"
cd "$dir"
days=825
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# The CA.
key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -out ca.pem \
  -subj "/CN=DAO dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"

# $1: name, $2: subject CN, $3: extensions file.
sign() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$tmp/$1.csr"
  openssl x509 -req -in "$tmp/$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -CAserial "$tmp/ca.srl" -days "$days" -sha256 -extfile "$3" -out "$1.pem" 2>/dev/null
}

cat >"$tmp/server.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,DNS:*.dao.test
authorityKeyIdentifier=keyid
EOF
sign server "DAO dev server" "$tmp/server.ext"

cat >"$tmp/client.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=DNS:client.dao.test
authorityKeyIdentifier=keyid
EOF
sign client "DAO dev client" "$tmp/client.ext"

chmod 600 ./*.key
echo "wrote $(pwd)/{ca,server,client}.{pem,key}"
