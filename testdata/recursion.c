// Recursion through a probed function, for return probes: every entry has its own return, and
// each call's duration covers its callees.
//
// stdout: count rec_sum <calls, recursive ones included>
//         returns rec_sum <calls that returned normally (all of them)>
//         count rec_top <top-level calls>
//         checksum <16 hex digits>
// Exit code 0.
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

static long calls;

__attribute__((noinline, noclone)) uint64_t rec_sum(uint64_t depth)
{
    calls++;
    if (depth == 0)
        return 1;
    uint64_t below = rec_sum(depth - 1);
    __asm__ volatile("" : "+r"(below)); // keeps the call from becoming a loop
    return below + depth;
}

__attribute__((noinline, noclone)) uint64_t rec_top(uint64_t depth)
{
    return rec_sum(depth) * 3;
}

int main(void)
{
    enum { TOP_CALLS = 211 };
    uint64_t checksum = 0;
    for (int i = 0; i < TOP_CALLS; i++)
        checksum = checksum * 7 + rec_top((uint64_t)(i % 40));
    printf("count rec_sum %ld\n", calls);
    printf("returns rec_sum %ld\n", calls);
    printf("count rec_top %d\n", TOP_CALLS);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
