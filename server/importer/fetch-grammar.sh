#!/bin/sh
# fetch-grammar.sh — fetches the tree-sitter-python grammar for discovery at
# build time (it is never committed): `npm pack` of one pinned version, the
# tarball's sha256 checked, then only package/src and the LICENSE unpacked.
#
# usage: fetch-grammar.sh OUT_DIR VERSION SHA256 [CACHE_DIR]
# A tarball already in OUT_DIR or in CACHE_DIR (or $NORN_NPM_CACHE) is reused
# when its checksum matches, so offline builds work from a prepared cache.
set -eu

out_dir=$1
version=$2
want_sha=$3
cache_dir=${4:-${NORN_NPM_CACHE:-}}
tarball=tree-sitter-python-$version.tgz

sha_ok() {
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$want_sha" ]
}

mkdir -p "$out_dir"
if ! sha_ok "$out_dir/$tarball"; then
    rm -f "$out_dir/$tarball"
    if [ -n "$cache_dir" ] && sha_ok "$cache_dir/$tarball"; then
        cp "$cache_dir/$tarball" "$out_dir/$tarball"
    else
        # npm pack only downloads the tarball: no install scripts, no node-gyp.
        (cd "$out_dir" && npm pack --silent "tree-sitter-python@$version" >/dev/null)
    fi
fi
if ! sha_ok "$out_dir/$tarball"; then
    echo "fetch-grammar.sh: $tarball does not have sha256 $want_sha" >&2
    rm -f "$out_dir/$tarball"
    exit 1
fi

rm -rf "$out_dir/package"
# -m: give the sources the current time, not the tarball's 1985 mtimes, so the
# build does not see them as older than this script and re-run it forever.
tar -xzmf "$out_dir/$tarball" -C "$out_dir" package/src package/LICENSE
