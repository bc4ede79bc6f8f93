# Prints each "--- FAIL" line of a `go test -v` log with the lines indented
# below it (the failing test's own messages), and any panic with the start of
# its trace, so that a CI log shows why a test failed and not only that it did.
function indent(s) { match(s, /[^ ]/); return RSTART }
/^panic:/ { trace = 60 }
trace > 0 { trace--; print; next }
/--- FAIL/ { block = 1; depth = indent($0); print; next }
block && /--- PASS|--- SKIP/ { next }
block && indent($0) > depth { print; next }
{ block = 0 }
