#!/usr/bin/env bash
# buf breaking for `make lint`: the protos are a public contract (other languages generate
# clients from them), so a change must not break what main already published.
#
# What it compares against, in order:
#   1. the local branch `main`                  -> --against '<git dir>#branch=main'
#   2. else the remote-tracking `origin/main`   -> --against '<git dir>#ref=origin/main'
#   3. else nothing: print a note and succeed (a clone without main has no baseline;
#      .ci/run fetches main first so CI has one).
# It also skips, with a note, when the baseline has no proto/ files yet (first proto commit)
# and when HEAD is the baseline commit with no uncommitted changes under proto/ (comparing
# main with itself proves nothing). Offline: buf reads the local git repository only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

note() { printf 'buf-breaking: %s\n' "$*"; }
buf=(npx --no -- buf)

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  note "not a git work tree; skipped"
  exit 0
fi

if git show-ref --verify --quiet refs/heads/main; then
  ref=main
  selector="branch=main"
elif git show-ref --verify --quiet refs/remotes/origin/main; then
  ref=origin/main
  selector="ref=origin/main"
else
  note "no 'main' or 'origin/main' ref in this clone; skipped (git fetch origin main:main to enable)"
  exit 0
fi

if ! git ls-tree -r --name-only "$ref" -- proto | grep -q '\.proto$'; then
  note "$ref has no proto/ files yet; nothing to compare against; skipped"
  exit 0
fi

if [[ "$(git rev-parse HEAD)" == "$(git rev-parse "$ref")" ]] \
  && [[ -z "$(git status --porcelain --untracked-files=all -- proto buf.yaml)" ]]; then
  note "HEAD is $ref and proto/ has no uncommitted changes; nothing to compare; skipped"
  exit 0
fi

# The common git dir works from linked worktrees too (their .git is a file); subdir= is
# needed when buf.yaml is not at the repository root.
gitdir="$(git rev-parse --path-format=absolute --git-common-dir)"
prefix="$(git rev-parse --show-prefix)"
prefix="${prefix%/}"
against="${gitdir}#${selector}${prefix:+,subdir=${prefix}}"

note "comparing proto/ with $ref ($(git rev-parse --short "$ref"))"
if ! "${buf[@]}" breaking --against "$against"; then
  note "the changes above break the published API of $ref." >&2
  note "add a new field/message/RPC (or a v2 package) instead of changing or removing one." >&2
  exit 1
fi
note "no breaking changes against $ref"
