#!/bin/sh
# Checks C++ files in native/ against .clang-format without rewriting them.
#   sh native/check-format.sh [FILE...]    (npm run format:native -- FILE...)
# Without arguments it checks the native files changed since the branch left
# main (git merge-base HEAD main), so new work is held to the style while
# existing files, which differ in a few hand-laid tables and long lines, are
# not reformatted under other people's feet. Prints a diff per file that
# differs; exit status 1 if any does, 2 if clang-format is missing.
set -u
cd "$(dirname "$0")/.." || exit 2
command -v clang-format >/dev/null 2>&1 || { echo "check-format: clang-format not found (apt-get install clang-format)" >&2; exit 2; }
if [ $# -eq 0 ]; then
  base=$(git merge-base HEAD main 2>/dev/null) || { echo "check-format: no main branch to compare with; name the files" >&2; exit 2; }
  set -- $(git diff --name-only --diff-filter=AM "$base" -- 'native/*.cc' 'native/*.h')
fi
status=0
for f in "$@"; do
  if ! clang-format --style=file "$f" | diff -u --label "$f" --label "$f (clang-format)" "$f" -; then status=1; fi
done
[ $status -eq 0 ] && echo "check-format: $# file(s) match .clang-format"
exit $status
