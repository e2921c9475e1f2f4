// Regression: a chain of tail calls through %return probes on both hit paths. A (trap path) tail-
// calls B (in process), which tail-calls C (trap path): all three return at once, through C's
// trap, B's return trampoline and A's trap in turn. The trap path once took the in-process
// trampoline in the slot for a real return address, dropped A's frame, and uprec failed at A's
// return.
//
// stdout: count A|B|C <calls>
//         returns A|B|C <calls that returned>
//         checksum <16 hex digits>
// Exit code 0.
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

static long returned_c;

__attribute__((noinline, noclone)) int C(int x)
{
    __asm__ volatile("" : "+r"(x));
    returned_c++;
    return x * 3;
}

__attribute__((noinline, noclone)) int B(int x)
{
    __asm__ volatile("" : "+r"(x));
    return C(x + 1); // a tail call (sibling call at -O2)
}

__attribute__((noinline, noclone)) int A(int x)
{
    __asm__ volatile("" : "+r"(x));
    return B(x + 1); // a tail call
}

int main(void)
{
    enum { CALLS = 300 };
    uint64_t checksum = 0;
    for (int i = 0; i < CALLS; i++) checksum = checksum * 31 + (uint64_t)A(i);
    // Tail calls return together: every call of each returns exactly once.
    printf("count A %d\ncount B %d\ncount C %d\n", CALLS, CALLS, CALLS);
    printf("returns A %ld\nreturns B %ld\nreturns C %ld\n", returned_c, returned_c, returned_c);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
