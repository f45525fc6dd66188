#!/usr/bin/env bash
# make-token.sh - a new bearer token for rpc-gateway --auth-tokens-file.
#
#   scripts/make-token.sh [LABEL] >> tokens.txt
#
# Writes the token's line for the tokens file to stdout (its SHA-256 as
# lowercase hex, then "# LABEL" when given) and the token itself to stderr:
# hand that to the caller, who sends "Authorization: Bearer <token>".  The
# file holds only hashes, so reading it gives nobody a token.  Send the
# gateway SIGHUP to take up a changed file.
#
# The token is "fgw_" and 256 random bits in base64url (43 characters):
# the same as this one-liner (README, "Security"):
#   t=fgw_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '='); echo "$t"; printf %s "$t" | sha256sum | cut -d' ' -f1
set -euo pipefail

label=${1:-}
case $label in
    *$'\n'* | *$'\r'*)
        echo "make-token.sh: the label must be one line" >&2
        exit 2
        ;;
esac
token=fgw_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=')
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
if [ -n "$label" ]; then
    printf '%s  # %s\n' "$hash" "$label"
else
    printf '%s\n' "$hash"
fi
printf '%s\n' "$token" >&2
