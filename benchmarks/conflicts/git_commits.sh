#!/bin/sh
# Three shells each commit three times into one git repository at once,
# retrying while the other holds index.lock (git's O_EXCL lock file,
# published by rename): correct; exits 1 unless all nine commits are there.
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cd "$d" || exit 1
git init -q . && git config user.email bench@example.invalid && git config user.name bench
echo base > base && git add base && git commit -qm base || exit 1
commit() {
  for i in 1 2 3; do
    echo "$1 $i" > "file$1"
    # A commit that lost the race for index.lock fails at once: try again.
    until git add "file$1" 2>/dev/null && git commit -q --allow-empty -m "$1 $i" 2>/dev/null; do
      sleep 0.01
    done
  done
}
for w in 1 2 3; do commit "$w" & done
wait
[ "$(git rev-list --count HEAD)" = 10 ]
