#!/bin/sh
# Create placeholder sources for workspace members whose Cargo.toml has been
# copied without their sources, so that `cargo build` can compile (and the image
# layer can cache) every third-party dependency before the real sources arrive.
#
# usage: stub-sources.sh MEMBER_DIR...
# Prints every file it created, one per line, so they can be removed again
# before the real sources are copied in.
#
# Each member gets src/lib.rs and src/main.rs (an empty library and an empty
# `fn main`), plus every target path its manifest names explicitly
# ([lib]/[[bin]]/[[bench]]/[[test]]/[[example]] `path = ...`, or the default
# path of a named bench/test/example, and a `build = ...` script).
set -eu

stub() { # stub FILE KIND
    [ -e "$1" ] && return 0
    mkdir -p "$(dirname "$1")"
    case "$2" in
        lib) : > "$1" ;;
        build|bin|example) echo 'fn main() {}' > "$1" ;;
        bench|test) echo 'fn main() {}' > "$1" ;;
    esac
    echo "$1"
}

for member in "$@"; do
    manifest="$member/Cargo.toml"
    [ -f "$manifest" ] || { echo "stub-sources: $manifest not found" >&2; exit 1; }
    stub "$member/src/lib.rs" lib
    stub "$member/src/main.rs" bin
    # kind<TAB>name<TAB>path for every target table, with blanks where unset.
    awk '
        function flush() { if (kind != "") printf "%s\t%s\t%s\n", kind, name, path; kind = ""; name = ""; path = "" }
        function val(line) { sub(/^[^=]*=[ \t]*"/, "", line); sub(/".*$/, "", line); return line }
        /^[ \t]*\[\[(bin|bench|test|example)\]\][ \t]*$/ { flush(); kind = $0; gsub(/[][ \t]/, "", kind); next }
        /^[ \t]*\[lib\][ \t]*$/ { flush(); kind = "lib"; next }
        /^[ \t]*\[package\][ \t]*$/ { flush(); inpkg = 1; next }
        /^[ \t]*\[/ { flush(); inpkg = 0; next }
        inpkg && /^[ \t]*build[ \t]*=[ \t]*"/ { printf "build\t\t%s\n", val($0) }
        kind != "" && /^[ \t]*name[ \t]*=[ \t]*"/ { name = val($0) }
        kind != "" && /^[ \t]*path[ \t]*=[ \t]*"/ { path = val($0) }
        END { flush() }
    ' "$manifest" | while IFS="$(printf '\t')" read -r kind name path; do
        if [ -z "$path" ]; then
            case "$kind" in
                bench) path="benches/$name.rs" ;;
                test) path="tests/$name.rs" ;;
                example) path="examples/$name.rs" ;;
                bin) path="src/bin/$name.rs" ;;
                *) continue ;;
            esac
        fi
        stub "$member/$path" "$kind"
    done
done
