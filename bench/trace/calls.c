// Calls `work` N times; the probe target for the perf-report comparison (perf records one sample per hit).
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) unsigned long work(unsigned long x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 31 + 7;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    unsigned long sum = 0;
    for (long i = 0; i < n; i++)
        sum += work((unsigned long)i);
    printf("calls %ld checksum %lu\n", n, sum);
    return 0;
}
