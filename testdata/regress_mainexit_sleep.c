// Regression: main() calls pthread_exit while the only other thread sleeps; a recording with
// --duration must still end on time and detach (the zombie leader never stops again).
//
// stdout: count work 1, then after SLEEP_S seconds: thread done
// Exit code 0.
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

enum { SLEEP_S = 4 };

__attribute__((noinline, noclone)) uint64_t work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x + 1;
}

static void *sleeper(void *arg)
{
    (void)arg;
    sleep(SLEEP_S);
    printf("thread done\n");
    fflush(stdout);
    return 0;
}

int main(void)
{
    printf("count work %d\n", (int)work(0));
    fflush(stdout);
    pthread_t t;
    if (pthread_create(&t, 0, sleeper, 0) != 0)
        return 1;
    pthread_exit(0);
}
