// Calls a probed function N times and reports how long the loop took by its own clock, so the
// per-hit cost of a tracer is measured without its start-up and tear-down.
//
// Usage: hitcost N
// stdout: calls <N>
//         loop_ns <nanoseconds spent in the loop (CLOCK_MONOTONIC)>
//         checksum <value>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline, noclone)) uint64_t func(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 31 + 7;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    uint64_t sum = 0;
    uint64_t start = now_ns();
    for (long i = 0; i < n; i++)
        sum += func((uint64_t)i);
    uint64_t elapsed = now_ns() - start;
    printf("calls %ld\nloop_ns %" PRIu64 "\nchecksum %" PRIu64 "\n", n, elapsed, sum);
    return 0;
}
