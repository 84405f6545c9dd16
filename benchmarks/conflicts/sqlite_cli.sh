#!/bin/sh
# Three shells each increment a counter three times with the sqlite3 CLI
# (rollback journal, .timeout 5000): correct; exits 1 on a lost update.
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
sqlite3 "$d/db" "create table t(x); insert into t values(0);"
for w in 1 2 3; do
  ( for i in 1 2 3; do sqlite3 "$d/db" ".timeout 5000" "update t set x=x+1;"; done ) &
done
wait
[ "$(sqlite3 "$d/db" "select x from t;")" = 9 ]
