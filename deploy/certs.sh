#!/bin/sh
# Makes what a TLS cluster needs, with openssl: a CA, for each node a key and
# a certificate signed by it (for the node's API and for Raft's mutual TLS),
# and an admin token. docs/DEPLOY.md runs it; so does `make test`
# (deploy/deploy_test.go), which starts deploy/compose.yaml's nodes with
# what it makes.
#
#   deploy/certs.sh [DIR] [NODE[=SAN,...] ...]
#
# DIR defaults to deploy/certs (compose.yaml's), the nodes to rafting-1,
# rafting-2 and rafting-3. Each node's certificate names DNS:NODE,
# DNS:localhost and IP:127.0.0.1, and the SANs given after "=", e.g.
#
#   deploy/certs.sh /etc/rafting/pki node1=IP:10.0.0.1 node2=IP:10.0.0.2 node3=IP:10.0.0.3
#
# Writes DIR/ca.crt, DIR/ca.key (keep it off the nodes), DIR/NODE.crt,
# DIR/NODE.key and DIR/admin.token (made once, kept on a second run, as is
# the CA; node certificates are made anew). Keys and the token are 0600; run
# as root, they are given to RAFTING_UID (default 65532, the image's user),
# who must read them (the server refuses a token file others may read).
set -eu
dir=${1:-$(dirname "$0")/certs}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- rafting-1 rafting-2 rafting-3
days=${RAFTING_CERT_DAYS:-825}
umask 077
mkdir -p "$dir"

if [ ! -f "$dir/ca.key" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
		-keyout "$dir/ca.key" -out "$dir/ca.crt" -subj /CN=rafting-ca -days "$days" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
fi

for spec in "$@"; do
	node=${spec%%=*}
	sans="DNS:$node,DNS:localhost,IP:127.0.0.1"
	case $spec in *=*) sans="$sans,${spec#*=}" ;; esac
	ext=$(mktemp)
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$sans" >"$ext"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
		-keyout "$dir/$node.key" -out "$dir/$node.csr" -subj "/CN=$node" 2>/dev/null
	openssl x509 -req -in "$dir/$node.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
		-out "$dir/$node.crt" -days "$days" -sha256 -extfile "$ext" 2>/dev/null
	rm -f "$dir/$node.csr" "$ext"
	chmod 0600 "$dir/$node.key"
	chmod 0644 "$dir/$node.crt"
	if [ "$(id -u)" = 0 ]; then
		chown "${RAFTING_UID:-65532}:${RAFTING_UID:-65532}" "$dir/$node.key"
	fi
	echo "$dir/$node.crt: $sans"
done
chmod 0644 "$dir/ca.crt"

if [ ! -f "$dir/admin.token" ]; then
	head -c 32 /dev/urandom | base64 | tr -d '\n' >"$dir/admin.token"
fi
chmod 0600 "$dir/admin.token"
if [ "$(id -u)" = 0 ]; then
	chown "${RAFTING_UID:-65532}:${RAFTING_UID:-65532}" "$dir/admin.token"
fi
echo "$dir/admin.token: the admin token (0600)"
