// Regression: ucontext coroutines. A %return-probed function swapcontext()s to another stack
// before it returns, so two probed frames live on two stacks at once and return in an order
// the tracer cannot guess from one stack. Both must return with their own values.
//
// stdout: count P <calls>
//         returns P <calls that returned>
//         checksum <16 hex digits>
// Exit code 0.
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <ucontext.h>

static ucontext_t mainc, ca, cb;
static char sa[65536], sb[65536];
static int ra, rb;
static long returned_p;

__attribute__((noinline, noclone)) int P(ucontext_t *self, ucontext_t *next, int x)
{
    __asm__ volatile("" : "+r"(x));
    swapcontext(self, next);
    returned_p++;
    return x + 1;
}

// Enters P on stack A and switches to B; B's P switches back, so A's P returns first.
static void fa(void) { ra = P(&ca, &cb, 10); }
static void fb(void) { rb = P(&cb, &ca, 20); }

int main(void)
{
    enum { ROUNDS = 100 };
    uint64_t checksum = 0;
    for (int i = 0; i < ROUNDS; i++) {
        ra = rb = 0;
        getcontext(&ca);
        ca.uc_stack.ss_sp = sa;
        ca.uc_stack.ss_size = sizeof sa;
        ca.uc_link = &cb;
        makecontext(&ca, fa, 0);
        getcontext(&cb);
        cb.uc_stack.ss_sp = sb;
        cb.uc_stack.ss_size = sizeof sb;
        cb.uc_link = &mainc;
        makecontext(&cb, fb, 0);
        swapcontext(&mainc, &ca);
        checksum = checksum * 31 + (uint64_t)ra * 1000 + (uint64_t)rb;
    }
    printf("ra %d\nrb %d\n", ra, rb);
    printf("count P %d\n", 2 * ROUNDS);
    printf("returns P %ld\n", returned_p);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
