// Calls nap(), which sleeps about 2 ms, and measures each call itself with CLOCK_MONOTONIC
// around the call, so a return probe's median latency can be compared with the program's own.
//
// stdout: count nap <calls>
//         median_ns nap <median of the program's own per-call measurements>
// The median varies between runs (it is a time): compare it within a tolerance, and do not
// compare this program's stdout between runs.
// Exit code 0.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { CALLS = 41 };

__attribute__((noinline, noclone)) void nap(long ns)
{
    struct timespec ts = { 0, ns };
    nanosleep(&ts, NULL);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    uint64_t took[CALLS];
    for (int i = 0; i < CALLS; i++) {
        uint64_t start = now_ns();
        nap(2000000);
        took[i] = now_ns() - start;
    }
    qsort(took, CALLS, sizeof took[0], by_value);
    printf("count nap %d\n", CALLS);
    printf("median_ns nap %llu\n", (unsigned long long)took[CALLS / 2]);
    return 0;
}
