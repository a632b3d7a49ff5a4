#!/bin/sh
# Write a C file holding FILE as a byte array, for mod_push to serve it.
#   tools/embed.sh NAME FILE > OUT.c
# Uses only od and sed (coreutils), so a fresh machine builds it.
set -eu
name=$1
file=$2
printf '/* Generated from %s by tools/embed.sh: do not edit. */\n' "$file"
printf '#include <stddef.h>\n\n'
printf 'const unsigned char %s[] = {\n' "$name"
od -An -v -tx1 "$file" | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g' -e 's/^/    /'
printf '};\n'
printf 'const size_t %s_len = sizeof %s;\n' "$name" "$name"
