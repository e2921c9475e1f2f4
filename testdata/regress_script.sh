#!/bin/sh
# Workload for the script regression test: runs the C program named by $1 twice, with
# different call counts, and does some shell work of its own (which calls malloc).
x=1
for i in 1 2 3; do x=$((x + i)); done
echo "shell $x"
"$1" 0
"$1" 23
