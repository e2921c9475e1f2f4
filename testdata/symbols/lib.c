/* Shared-library fixture: exported functions, one hidden, one static. */
static int lib_helper(int x) { return x ^ 0x55; }

int lib_add(int a, int b) { return lib_helper(a) + b; }
int lib_mul(int a, int b) { return a * b + lib_helper(b); }
__attribute__((visibility("hidden"))) int lib_hidden(int a) { return a + 7; }
int lib_calls_hidden(int a) { return lib_hidden(a); }
