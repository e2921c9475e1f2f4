// Run twice by regress_script.sh: a probe on this file must count the hits in both runs even
// though the workload uprec starts is a #!/bin/sh script.
//
// stdout: count work <calls in this run> (CALLS + the first argument)
// Exit code 0.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline, noclone)) uint64_t work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 2;
}

int main(int argc, char **argv)
{
    int calls = 100 + (argc > 1 ? atoi(argv[1]) : 0);
    uint64_t s = 0;
    for (int i = 0; i < calls; i++)
        s += work((uint64_t)i);
    printf("count work %d\nsum %llu\n", calls, (unsigned long long)s);
    return 0;
}
