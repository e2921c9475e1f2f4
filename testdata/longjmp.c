// longjmp out of nested probed frames, for return probes: the frames skipped by longjmp never
// return, and a return probe must neither report them as returns nor break the program.
// lj_outer -> lj_middle -> lj_inner; on every third call lj_inner longjmps back to main.
//
// stdout: count lj_outer|lj_middle|lj_inner <calls>
//         returns lj_outer|lj_middle|lj_inner <calls that returned normally>
//         jumps <longjmps taken>
//         checksum <16 hex digits>
// Exit code 0.
#include <inttypes.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>

static jmp_buf back_to_main;
static long returned_outer, returned_middle, returned_inner;

__attribute__((noinline, noclone)) uint64_t lj_inner(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    if (x % 3 == 0)
        longjmp(back_to_main, (int)(x % 1000) + 1);
    returned_inner++;
    return x * 2;
}

__attribute__((noinline, noclone)) uint64_t lj_middle(uint64_t x)
{
    uint64_t r = lj_inner(x) + 1;
    __asm__ volatile("" : "+r"(r));
    returned_middle++;
    return r;
}

__attribute__((noinline, noclone)) uint64_t lj_outer(uint64_t x)
{
    uint64_t r = lj_middle(x) + 1;
    __asm__ volatile("" : "+r"(r));
    returned_outer++;
    return r;
}

int main(void)
{
    enum { CALLS = 900 };
    volatile uint64_t checksum = 0;
    volatile long jumps = 0;
    for (volatile int i = 0; i < CALLS; i++) {
        int landed = setjmp(back_to_main);
        if (landed) {
            jumps++;
            checksum = checksum * 3 + (uint64_t)landed;
            continue;
        }
        checksum = checksum * 5 + lj_outer((uint64_t)i);
    }
    printf("count lj_outer %d\ncount lj_middle %d\ncount lj_inner %d\n", CALLS, CALLS, CALLS);
    printf("returns lj_outer %ld\nreturns lj_middle %ld\nreturns lj_inner %ld\n",
           returned_outer, returned_middle, returned_inner);
    printf("jumps %ld\n", (long)jumps);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
