#!/bin/sh
# Makes throw-away TLS material for the TLS tests in DIR: a CA, a server
# certificate for localhost/127.0.0.1 signed by it, and a client certificate
# signed by it (for mTLS).
set -eu
dir=$1
cd "$dir"
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=norn-test-ca
q openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
q openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
q openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=norn-test-client
q openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
test -s server.pem && test -s client.pem
