// Regression: exit() while two threads keep creating threads that call the probed function.
// Threads appear and vanish during exit_group; the tracer must finish and report the exit
// code. The number of calls is not knowable by the program, only bounded below by main's one.
//
// stdout: count_at_least work 1
// Exit code 3 (so a test can tell the program's code from uprec's own 0).
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline, noclone)) uint64_t work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x + 1;
}

static void *nop(void *arg)
{
    work((uint64_t)(uintptr_t)arg);
    return 0;
}

static void *spawner(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, 0, nop, 0) == 0)
            pthread_detach(t);
    }
    return 0;
}

int main(void)
{
    work(0);
    printf("count_at_least work 1\n");
    fflush(stdout);
    for (int i = 0; i < 2; i++) {
        pthread_t t;
        if (pthread_create(&t, 0, spawner, 0) != 0)
            return 1;
    }
    usleep(300000);
    exit(3);
}
