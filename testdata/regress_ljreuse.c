// Regression: longjmp out of a %return-probed function, then the same function called again
// from the same stack depth, so the abandoned frame's return-address slot is reused. The
// tracer must drop the abandoned frame instead of "returning" through it to a stale caller
// (it once made f(1) return the wrong value).
//
// stdout: count A|f <calls>
//         returns A|f <calls that returned normally>
//         checksum <16 hex digits>
// Exit code 0; exit 1 if any f(1) returned something other than 21.
#include <inttypes.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>

static jmp_buf jb;
static long returned_a, returned_f;

__attribute__((noinline, noclone)) void bail(void) { longjmp(jb, 1); }

__attribute__((noinline, noclone)) int A(int x)
{
    __asm__ volatile("" : "+r"(x));
    if (x == 1)
        bail();
    returned_a++;
    return x * 10;
}

__attribute__((noinline, noclone)) int f(int mode)
{
    if (mode == 0) {
        if (setjmp(jb) == 0) {
            A(1);
            puts("after A(1): wrong path");
        }
        returned_f++;
        return 0;
    }
    int r = A(2);
    __asm__ volatile("" : "+r"(r));
    returned_f++;
    return r + 1;
}

int main(void)
{
    enum { ROUNDS = 200 };
    uint64_t checksum = 0;
    int bad = 0;
    for (int i = 0; i < ROUNDS; i++) {
        checksum = checksum * 7 + (uint64_t)f(0);
        int r = f(1);
        if (r != 21)
            bad++;
        checksum = checksum * 7 + (uint64_t)r;
    }
    printf("count A %d\ncount f %d\n", 2 * ROUNDS, 2 * ROUNDS);
    printf("returns A %ld\nreturns f %ld\n", returned_a, returned_f);
    printf("wrong %d\n", bad);
    printf("checksum %016" PRIx64 "\n", checksum);
    return bad ? 1 : 0;
}
