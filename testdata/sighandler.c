// Signal handlers that call the probed function while it is already active on the interrupted
// stack: SIGUSR1 runs on the same stack, SIGUSR2 on an alternate signal stack (sigaltstack), so
// a return probe that matches frames by stack pointer sees the stack jump elsewhere and back.
// sh_work raises a signal on every 10th (USR1) and every 15th (USR2) call made from main.
//
// stdout: count sh_work <all calls: main's and the handlers'>
//         returns sh_work <same: every call returns>
//         count sh_work_main <calls from main>
//         signals <handlers run>
//         checksum <16 hex digits>
// Exit code 0.
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t in_handler;
static volatile long handled, calls;
static volatile uint64_t handler_sum;

__attribute__((noinline, noclone)) uint64_t sh_work(uint64_t x)
{
    calls++;
    if (!in_handler) {
        if (x % 10 == 0)
            raise(SIGUSR1);
        if (x % 15 == 0)
            raise(SIGUSR2);
    }
    __asm__ volatile("" : "+r"(x));
    return x * 11 + 2;
}

static void on_signal(int sig)
{
    in_handler = 1;
    handler_sum += sh_work((uint64_t)sig);
    handled++;
    in_handler = 0;
}

int main(void)
{
    enum { MAIN_CALLS = 600 };
    stack_t alt = { .ss_sp = malloc(1 << 16), .ss_size = 1 << 16, .ss_flags = 0 };
    sigaltstack(&alt, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, NULL);

    uint64_t checksum = 0;
    for (int i = 0; i < MAIN_CALLS; i++)
        checksum = checksum * 3 + sh_work((uint64_t)i);
    checksum += handler_sum;
    printf("count sh_work %ld\n", (long)calls);
    printf("returns sh_work %ld\n", (long)calls);
    printf("count sh_work_main %d\n", MAIN_CALLS);
    printf("signals %ld\n", (long)handled);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
