#!/usr/bin/env bash
# Runs one everyday S3 tool against Ferry's embedded store, as a new user would, with the tool's
# default settings for a generic S3 endpoint (endpoint, key, secret, region, path style).
#
# Usage: s3_tools.sh TOOL ENDPOINT BUCKET ACCESS_KEY SECRET_KEY
#   TOOL: aws | s3cmd | rclone (the command to run is taken from FERRY_TEST_AWS_CLI,
#   FERRY_TEST_S3CMD, FERRY_TEST_RCLONE, as tests/api/s3_tools.rs passes it)
# Lists buckets, lists with prefixes (checking the directory lines), uploads and downloads a
# 1 MB and a 40 MB file, copies and moves between keys, syncs with deletion both ways, removes
# recursively and fetches a presigned URL; every download is compared byte for byte.
# Exits non-zero, saying which step failed, on the first thing that does not work.
set -euo pipefail

tool="$1" endpoint="$2" bucket="$3" access_key="$4" secret_key="$5"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" # no user configuration of any tool applies
mkdir -p "$HOME"
cd "$work"

step() { echo "--- $tool: $*" >&2; }
fail() { echo "FAILED ($tool): $*" >&2; exit 1; }
same() { cmp -s "$1" "$2" || fail "$2 differs from $1"; }
contains() { grep -qF -- "$2" <<<"$1" || fail "expected '$2' in: $1"; }
lacks() { if grep -qF -- "$2" <<<"$1"; then fail "did not expect '$2' in: $1"; fi; }

head -c 1048576 /dev/urandom >small.bin
head -c 41943040 /dev/urandom >big.bin
mkdir -p src/sub dst
echo one >src/one.txt
echo two >src/sub/two.txt
echo stale >dst/stale.txt

case "$tool" in
aws)
    aws="${FERRY_TEST_AWS_CLI:?FERRY_TEST_AWS_CLI}"
    export AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key" AWS_DEFAULT_REGION=us-east-1
    export AWS_CONFIG_FILE="$HOME/none" AWS_SHARED_CREDENTIALS_FILE="$HOME/none"
    s3() { "$aws" --endpoint-url "$endpoint" s3 "$@"; }
    p="s3://$bucket/aws"

    step "list buckets"; contains "$(s3 ls)" " $bucket"
    step "upload 1 MB and 40 MB (multipart)"
    s3 cp small.bin "$p/dir/small.bin" >/dev/null
    s3 cp big.bin "$p/dir/big.bin" >/dev/null
    step "list with prefixes"
    out="$(s3 ls "$p/")"; contains "$out" "PRE dir/"; lacks "$out" "small.bin"
    out="$(s3 ls "$p/dir/")"; contains "$out" "1048576 small.bin"; contains "$out" "41943040 big.bin"
    step "download"
    s3 cp "$p/dir/small.bin" got-small.bin >/dev/null; same small.bin got-small.bin
    s3 cp "$p/dir/big.bin" got-big.bin >/dev/null; same big.bin got-big.bin
    step "copy and move between keys"
    s3 cp "$p/dir/small.bin" "$p/copy/small.bin" >/dev/null
    s3 cp "$p/dir/big.bin" "$p/copy/big.bin" >/dev/null
    s3 mv "$p/copy/big.bin" "$p/moved/big.bin" >/dev/null
    s3 cp "$p/copy/small.bin" copied.bin >/dev/null; same small.bin copied.bin
    s3 cp "$p/moved/big.bin" moved.bin >/dev/null; same big.bin moved.bin
    lacks "$(s3 ls "$p/copy/")" "big.bin"
    step "sync with --delete, both ways"
    s3 sync src "$p/sync/" >/dev/null
    rm src/one.txt; echo three >src/three.txt
    s3 sync src "$p/sync/" --delete >/dev/null
    out="$(s3 ls --recursive "$p/sync/")"; lacks "$out" "one.txt"; contains "$out" "three.txt"
    s3 sync "$p/sync/" dst --delete >/dev/null
    diff -r src dst || fail "sync down differs"
    step "presign"
    url="$("$aws" --endpoint-url "$endpoint" s3 presign "$p/dir/small.bin" --expires-in 300)"
    curl -sSf "$url" -o presigned.bin; same small.bin presigned.bin
    step "s3api list-objects (v1) and delete-objects"
    out="$("$aws" --endpoint-url "$endpoint" s3api list-objects --bucket "$bucket" --prefix aws/ --delimiter / \
        --output text --query 'CommonPrefixes[].Prefix')"
    contains "$out" "aws/dir/"
    "$aws" --endpoint-url "$endpoint" s3api delete-objects --bucket "$bucket" \
        --delete '{"Objects":[{"Key":"aws/copy/small.bin"},{"Key":"aws/none"}]}' >/dev/null
    lacks "$(s3 ls --recursive "$p/")" "copy/small.bin"
    step "recursive remove"
    s3 rm --recursive "$p/" >/dev/null
    [ -z "$(s3 ls --recursive "$p/" || true)" ] || fail "objects left after rm --recursive"
    ;;
s3cmd)
    s3cmd="${FERRY_TEST_S3CMD:?FERRY_TEST_S3CMD}"
    host="${endpoint#http://}"
    cat >"$HOME/.s3cfg" <<CFG
[default]
access_key = $access_key
secret_key = $secret_key
host_base = $host
host_bucket = $host
bucket_location = us-east-1
use_https = False
CFG
    s3() { "$s3cmd" -c "$HOME/.s3cfg" "$@"; }
    p="s3://$bucket/s3cmd"

    step "list buckets"; contains "$(s3 ls)" "s3://$bucket"
    step "upload 1 MB and 40 MB (multipart)"
    s3 put small.bin "$p/dir/small.bin" >/dev/null
    s3 put big.bin "$p/dir/big.bin" >/dev/null
    step "list with prefixes"
    out="$(s3 ls "$p/")"; contains "$out" "DIR  $p/dir/"; lacks "$out" "small.bin"
    out="$(s3 ls "$p/dir/")"; contains "$out" "$p/dir/small.bin"; contains "$out" "$p/dir/big.bin"
    step "download"
    s3 get "$p/dir/small.bin" got-small.bin >/dev/null; same small.bin got-small.bin
    s3 get "$p/dir/big.bin" got-big.bin >/dev/null; same big.bin got-big.bin
    step "copy and move between keys"
    s3 cp "$p/dir/small.bin" "$p/copy/small.bin" >/dev/null
    s3 cp "$p/dir/big.bin" "$p/copy/big.bin" >/dev/null
    s3 mv "$p/copy/big.bin" "$p/moved/big.bin" >/dev/null
    s3 get "$p/copy/small.bin" copied.bin >/dev/null; same small.bin copied.bin
    s3 get "$p/moved/big.bin" moved.bin >/dev/null; same big.bin moved.bin
    lacks "$(s3 ls "$p/copy/")" "big.bin"
    step "sync with --delete-removed, both ways"
    s3 sync src/ "$p/sync/" >/dev/null
    rm src/one.txt; echo three >src/three.txt
    s3 sync --delete-removed src/ "$p/sync/" >/dev/null
    out="$(s3 ls --recursive "$p/sync/")"; lacks "$out" "one.txt"; contains "$out" "three.txt"
    s3 sync --delete-removed "$p/sync/" dst/ >/dev/null
    diff -r src dst || fail "sync down differs"
    step "presign"
    url="$(s3 signurl "$p/dir/small.bin" +300)"
    curl -sSf "$url" -o presigned.bin; same small.bin presigned.bin
    step "recursive remove"
    s3 del --recursive --force "$p/" >/dev/null
    [ -z "$(s3 ls --recursive "$p/")" ] || fail "objects left after del --recursive"
    ;;
rclone)
    rclone="${FERRY_TEST_RCLONE:?FERRY_TEST_RCLONE}"
    # rclone's AWS SDK refuses a plain-HTTP endpoint when AWS_CA_BUNDLE is set (some machines
    # set it for the AWS CLI): it has nothing to do here.
    unset AWS_CA_BUNDLE
    export RCLONE_CONFIG="$HOME/rclone.conf"
    cat >"$RCLONE_CONFIG" <<CFG
[ferry]
type = s3
provider = Other
access_key_id = $access_key
secret_access_key = $secret_key
endpoint = $endpoint
region = us-east-1
CFG
    rc() { "$rclone" --config "$RCLONE_CONFIG" "$@"; }
    p="ferry:$bucket/rclone"

    step "list buckets"; contains "$(rc lsd ferry:)" " $bucket"
    step "upload 1 MB and 40 MB (and 40 MB in parts)"
    rc copyto small.bin "$p/dir/small.bin"
    rc copyto big.bin "$p/dir/big.bin"
    rc copyto --s3-upload-cutoff 5M --s3-chunk-size 5M big.bin "$p/dir/parts.bin"
    step "list with prefixes"
    out="$(rc lsf "$p/")"; contains "$out" "dir/"; lacks "$out" "small.bin"
    out="$(rc lsf "$p/dir/")"; contains "$out" "small.bin"; contains "$out" "parts.bin"
    step "download"
    rc copyto "$p/dir/small.bin" got-small.bin; same small.bin got-small.bin
    rc copyto "$p/dir/big.bin" got-big.bin; same big.bin got-big.bin
    rc copyto "$p/dir/parts.bin" got-parts.bin; same big.bin got-parts.bin
    step "copy and move between keys"
    rc copyto "$p/dir/small.bin" "$p/copy/small.bin"
    rc copyto "$p/dir/big.bin" "$p/copy/big.bin"
    rc moveto "$p/copy/big.bin" "$p/moved/big.bin"
    rc copyto "$p/copy/small.bin" copied.bin; same small.bin copied.bin
    rc copyto "$p/moved/big.bin" moved.bin; same big.bin moved.bin
    lacks "$(rc lsf "$p/copy/")" "big.bin"
    step "sync (which deletes), both ways"
    rc sync src "$p/sync"
    rm src/one.txt; echo three >src/three.txt
    rc sync src "$p/sync"
    out="$(rc lsf -R "$p/sync")"; lacks "$out" "one.txt"; contains "$out" "three.txt"
    rc sync "$p/sync" dst
    diff -r src dst || fail "sync down differs"
    step "presign"
    url="$(rc link --expire 5m "$p/dir/small.bin")"
    curl -sSf "$url" -o presigned.bin; same small.bin presigned.bin
    step "recursive remove"
    rc delete "$p"
    [ -z "$(rc lsf -R "$p")" ] || fail "objects left after delete"
    ;;
*) fail "unknown tool $tool" ;;
esac
echo "$tool: everyday commands ok"
