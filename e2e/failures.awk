# Prints why tests of a `go test -v` log failed: run as
#   awk -f e2e/failures.awk e2e.out e2e.out
# The first pass collects the names of the failed tests ("--- FAIL: NAME");
# the second prints every line logged under those names (after "=== RUN",
# "=== NAME" or "=== CONT" of the test, up to the next "=== " line: parallel
# subtests print their messages there, not under "--- FAIL"), then the
# "--- FAIL" lines themselves, and any panic with the start of its trace.
FNR == NR {
	if (match($0, /--- FAIL: [^ ]+/)) failed[substr($0, RSTART + 10, RLENGTH - 10)] = 1
	next
}
/^panic:/ { trace = 60 }
trace > 0 { trace--; print; next }
/^=== (RUN|NAME|CONT|PAUSE)/ { show = ($3 in failed); if (show) print; next }
/--- FAIL/ { print; show = 0; next }
/^(--- |PASS|FAIL|ok)/ { show = 0 }
show { print }
