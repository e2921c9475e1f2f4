// Regression: main() calls pthread_exit while other threads keep calling the probed function;
// the thread-group leader becomes a zombie and the tracer must not wait for it.
// main calls work 5 times; thread t1 starts t2, both call work CALLS times, t1 joins t2 and
// prints the totals, then the process ends when t1 returns (exit code 0).
//
// stdout: count work <calls>
//         checksum <16 hex digits>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

enum { MAIN_CALLS = 5, CALLS = 2000 };

__attribute__((noinline, noclone)) uint64_t work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 3 + 1;
}

static void *t2_body(void *arg)
{
    uint64_t s = 0;
    for (int i = 0; i < CALLS; i++)
        s += work((uint64_t)i);
    *(uint64_t *)arg = s;
    return 0;
}

static void *t1_body(void *arg)
{
    (void)arg;
    usleep(100000); // let main reach pthread_exit first
    static uint64_t s2;
    pthread_t t2;
    if (pthread_create(&t2, 0, t2_body, &s2) != 0)
        return 0;
    uint64_t s = 0;
    for (int i = 0; i < CALLS; i++)
        s += work((uint64_t)i + 7);
    pthread_join(t2, 0);
    printf("count work %d\n", MAIN_CALLS + 2 * CALLS);
    printf("checksum %016" PRIx64 "\n", s * 1000003 + s2);
    fflush(stdout);
    return 0;
}

int main(void)
{
    for (int i = 0; i < MAIN_CALLS; i++)
        work((uint64_t)i);
    pthread_t t1;
    if (pthread_create(&t1, 0, t1_body, 0) != 0)
        return 1;
    pthread_exit(0);
}
