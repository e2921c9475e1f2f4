// Calls af_f(i, i % 7) for i in 0..N-1, so an argument filter has an exact expected count:
// `arg1 < 100` matches 100 calls, `arg2 == 3` matches the i with i % 7 == 3.
//
// Usage: argfilter [N]   (default 1000)
// stdout: count af_f <N>
//         count af_f_arg1_lt_100 <calls with arg1 < 100>
//         count af_f_arg2_eq_3 <calls with arg2 == 3>
//         checksum <16 hex digits>
// Exit code 0; 2 on a bad argument.
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline, noclone)) uint64_t af_f(uint64_t i, uint64_t k)
{
    __asm__ volatile("" : "+r"(i), "+r"(k));
    return i * 13 + k;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    if (n < 1) { fprintf(stderr, "usage: argfilter [N>0]\n"); return 2; }
    uint64_t checksum = 0;
    long lt100 = 0, eq3 = 0;
    for (long i = 0; i < n; i++) {
        checksum = checksum * 3 + af_f((uint64_t)i, (uint64_t)(i % 7));
        lt100 += i < 100;
        eq3 += i % 7 == 3;
    }
    printf("count af_f %ld\n", n);
    printf("count af_f_arg1_lt_100 %ld\n", lt100);
    printf("count af_f_arg2_eq_3 %ld\n", eq3);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
