/* Second translation unit: its static helper shares the name of prog.c's. */
static int helper(int x) { return x - 1; }

int other_entry(int x) { return helper(x) * 2; }
