#!/usr/bin/env bash
# generate-check for `make generate-check` and CI: src/gen is committed and must be exactly
# what `buf generate` makes from proto/ — never edited by hand, never stale after a proto
# change. Regenerates in place (buf.gen.yaml has clean: true, so stale files are removed
# too) and fails when git sees any difference. Offline: only local plugins are used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

npx --no -- buf generate

changes="$(git status --porcelain --untracked-files=all -- src/gen)"
if [[ -n "$changes" ]]; then
  {
    echo "generate-check: FAILED — src/gen does not match what buf generates from proto/:"
    printf '%s\n' "$changes" | sed 's/^/  /'
    git --no-pager diff --stat -- src/gen | sed 's/^/  /'
    echo "Fix: run 'make generate' and commit src/gen together with the proto change"
    echo "(src/gen is generated code; edit the .proto, never the generated file)."
  } >&2
  exit 1
fi
echo "generate-check: src/gen matches proto/"
